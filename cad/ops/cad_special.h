/* The op table's special functions that <math.h> lacks (NOTE [ Expression
 * vocabulary ] in cad/ops/cexpr.py: CNAMES spells them): sigmoid, numpy's
 * remainder, lgamma without the global signgam, erfinv, digamma, polygamma, and
 * scipy.special's gamma rgamma gammasgn erfcinv ndtr logit log_ndtr ndtri, Bessel j0 j1 y0 y1
 * jn yn (<math.h>'s) and i0 i1 i0e i1e.
 * One text for every compiler of the table's expressions: the CPU rows
 * (tools/gen_ops.py puts it into _gen_ops.h), the build-time CUDA module and its
 * host emulation (into _gen_rows.cuh), and the fused replay kernels (cad/fuse.py
 * reads it at run time), so it is written in the common subset of C and CUDA C++.
 * The float versions compute in double. */
#ifndef CAD_SPECIAL_H
#define CAD_SPECIAL_H
#ifdef __CUDACC__
#define CAD_SPF static __device__ inline
#ifndef INFINITY
#define INFINITY __longlong_as_double(0x7ff0000000000000LL)
#endif
#ifndef NAN
#define NAN __longlong_as_double(0x7ff8000000000000LL)
#endif
#else
#include <math.h>
#define CAD_SPF static inline
#endif

/* 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: both from the one e^-|x| (the
 * vector loops evaluated both branches' exps, two calls per element; the same
 * numbers as the form with two exps) */
CAD_SPF double cad_sigmoid(double x) {
    const double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
CAD_SPF float cad_sigmoidf(float x) {
    const float e = expf(-fabsf(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

/* pow with the exponents 2 and 3 as products, in every path (rows, scalar sweeps,
 * CUDA, fused replay): x * x is pow's correctly rounded square; x * x * x is what JAX
 * (integer_pow) and torch (pow by 3) compute, within an ulp of pow.  The generated
 * rows also run a loop per such exponent when it is one value for the whole row
 * (gen_ops.py's HELD_CONSTANTS): x ** 3 and its gradient without a pow per element. */
CAD_SPF double cad_pow(double x, double y) {
    const double p = pow(x, y);   /* (called unconditionally: the vector pow of a loop has no masked form) */
    return y == 2 ? x * x : (y == 3 ? x * x * x : p);
}
CAD_SPF float cad_powf(float x, float y) {
    const float p = powf(x, y);
    return y == 2 ? x * x : (y == 3 ? x * x * x : p);
}
/* the same numbers, pow only when needed: for an exponent the compiler knows */
CAD_SPF double cad_powc(double x, double y) { return y == 2 ? x * x : (y == 3 ? x * x * x : pow(x, y)); }
CAD_SPF float cad_powcf(float x, float y) { return y == 2 ? x * x : (y == 3 ? x * x * x : powf(x, y)); }

/* numpy's remainder (npy_divmod): the sign of y; C's remainder() rounds the
 * quotient to nearest instead */
CAD_SPF double cad_remainder(double x, double y) {
    double m = fmod(x, y);
    if (y == 0) return m;   /* nan */
    if (m != 0) {
        if ((y < 0) != (m < 0)) m += y;
    } else {
        m = copysign(0.0, y);
    }
    return m;
}
CAD_SPF float cad_remainderf(float x, float y) { return (float)cad_remainder(x, y); }

CAD_SPF double cad_lgamma(double x) {
#if defined(__CUDACC__) || !defined(__GLIBC__)
    return lgamma(x);
#else
    int s;   /* lgamma writes the global signgam: a race between threads */
    return lgamma_r(x, &s);
#endif
}
CAD_SPF float cad_lgammaf(float x) { return (float)cad_lgamma(x); }

/* erfinv: Giles' single-precision approximation ("Approximating the erfinv
 * function", GPU Computing Gems, 2011) refined by Halley steps on
 * erf(x) = y, or on erfc(x) = 1 - |y| for |y| > 0.5 (1 - |y| is exact there, so
 * values near +-1 keep their precision) */
CAD_SPF double cad_erfinv(double y) {
#ifdef __CUDACC__
    return erfinv(y);
#else
    double a = fabs(y), w, p, x, u;
    int k;
    if (!(a <= 1)) return NAN;
    if (a == 1) return copysign(INFINITY, y);
    if (a == 0) return y;
    w = -log((1 - a) * (1 + a));
    if (w < 5) {
        w -= 2.5;
        p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w; p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w; p = 1.50140941 + p * w;
    } else {
        w = sqrt(w) - 3;
        p = -0.000200214257;
        p = 0.000100950558 + p * w; p = 0.00134934322 + p * w; p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w; p = -0.0076224613 + p * w; p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w; p = 2.83297682 + p * w;
    }
    x = p * a;
    for (k = 0; k < 8; k++) {   /* two steps suffice for |y| < 1 - 1e-8; more for tails */
        /* f(x) = 0 with f' = +-2/sqrt(pi) exp(-x^2), f'' = -2 x f': Halley's step is
         * x - u / (1 + x u) with u = f / f' */
        double d = 1.1283791670955126 * exp(-x * x);
        if (d == 0) break;
        u = a > 0.5 ? -(erfc(x) - (1 - a)) / d : (erf(x) - a) / d;
        u = u / (1 + x * u);
        x -= u;
        /* a step of under ~5e-15 relative leaves x converged (Halley is cubic: the
           next one would only chase rounding); at 1e-17 the loop ran a third step
           for a quarter of the arguments and 8 for 5%, cycling at the last ulp */
        if (fabs(u) <= 5e-15 * x) break;
    }
    return copysign(x, y);
#endif
}
CAD_SPF float cad_erfinvf(float y) {
#ifdef __CUDACC__
    return erfinvf(y);
#else
    return (float)cad_erfinv(y);
#endif
}

/* digamma: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the
 * asymptotic series (to x^-14: the next term is below 1e-16 there); x < 0 by the
 * reflection psi(x) = psi(1 - x) - pi cot(pi x), with pi x reduced exactly.  As
 * scipy: -inf at +0, +inf at -0, nan at the negative integers. */
CAD_SPF double cad_digamma(double x) {
    double r = 0, z, z2;
    if (x != x || x == INFINITY) return x;
    if (x == 0) return copysign(INFINITY, -x);
    if (x < 0) {
        double f = x - floor(x);   /* exact, and cot(pi x) = cot(pi f) */
        if (f == 0 || x == -INFINITY) return NAN;
        if (f > 0.5) f -= 1;       /* exact too: tan keeps its precision near the poles */
        r = -3.141592653589793 / tan(3.141592653589793 * f);
        x = 1 - x;
    }
    while (x < 10) {
        r -= 1 / x;
        x += 1;
    }
    z = 1 / x;
    z2 = z * z;
    return r + log(x) - 0.5 * z
        - z2 * (1.0 / 12 - z2 * (1.0 / 120 - z2 * (1.0 / 252 - z2 * (1.0 / 240 - z2 * (1.0 / 132
          - z2 * (691.0 / 32760 - z2 * (1.0 / 12)))))));
}
CAD_SPF float cad_digammaf(float x) { return (float)cad_digamma(x); }

/* the Hurwitz zeta function zeta(s, q) for s > 1 (Cephes' zeta: direct sum to
 * q + k > 9, then Euler-Maclaurin); q < 0 is allowed for integer s */
CAD_SPF double cad_hzeta(double s, double q) {
    const double A[12] = {12.0, -720.0, 30240.0, -1209600.0, 47900160.0, -1.8924375803183791606e9,
                          7.47242496e10, -2.950130727918164224e12, 1.1646782814350067249e14,
                          -4.5979787224074726105e15, 1.8152105401943546773e17,
                          -7.1661652561756670113e18};
    double sum, a, b, k, w, t;
    int i;
    if (q <= 0) {
        if (q == floor(q)) return INFINITY;
        if (s != floor(s)) return NAN;
    }
    sum = pow(q, -s);
    a = q;
    i = 0;
    b = 0;
    while (i < 9 || a <= 9) {
        i += 1;
        a += 1;
        b = pow(a, -s);
        sum += b;
        if (fabs(b / sum) < 1.1102230246251565e-16) return sum;
    }
    w = a;
    sum += b * w / (s - 1);
    sum -= 0.5 * b;
    a = 1;
    k = 0;
    for (i = 0; i < 12; i++) {
        a *= s + k;
        b /= w;
        t = a * b / A[i];
        sum += t;
        if (fabs(t / sum) < 1.1102230246251565e-16) break;
        k += 1;
        a *= s + k;
        b /= w;
        k += 1;
    }
    return sum;
}

/* trigamma, polygamma(1, x) (digamma's derivative): the recurrence
 * psi1(x) = psi1(x + 1) + 1/x^2 up to x >= 10, then the asymptotic series
 * 1/x + 1/(2x^2) + sum B_2k / x^(2k+1) to x^-17 (the next term is below 1e-16 of the
 * value there); x < 0 by the reflection psi1(x) = pi^2 / sin^2(pi x) - psi1(1 - x), x
 * reduced exactly to [-1/2, 1/2] first (x - floor(x) is not exact for a tiny negative x); +inf at 0 and the negative integers, as the Hurwitz zeta gives.  The
 * zeta's direct sum called pow per term: digamma's gradient over 1M elements took 7x
 * torch's time. */
CAD_SPF double cad_trigamma(double x) {
    double r = 0, acc = 0, sgn = 1, z, z2;
    if (x != x) return x;
    if (x == INFINITY) return 0;
    if (x <= 0) {
        double f, s;
        if (x == floor(x)) return INFINITY;
        f = x - floor(x + 0.5);   /* exact, in [-1/2, 1/2]: sin^2(pi x) = sin^2(pi f) */
        s = sin(3.141592653589793 * f);
        r = 9.869604401089358 / (s * s);
        sgn = -1;
        x = 1 - x;
    }
    while (x < 10) {
        acc += 1 / (x * x);
        x += 1;
    }
    z = 1 / x;
    z2 = z * z;
    return r + sgn * (acc + z + 0.5 * z2 + z * z2 * (1.0 / 6 - z2 * (1.0 / 30 - z2 * (1.0 / 42 - z2 * (1.0 / 30
        - z2 * (5.0 / 66 - z2 * (691.0 / 2730 - z2 * (7.0 / 6 - z2 * (3617.0 / 510)))))))));
}

/* polygamma(n, x), n a nonnegative integer (nan otherwise): digamma for n = 0,
 * trigamma for 1, else (-1)^(n+1) n! zeta(n + 1, x) */
CAD_SPF double cad_polygamma(double n, double x) {
    double f = 1;
    int k;
    if (n != floor(n) || n < 0) return NAN;
    if (n == 0) return cad_digamma(x);
    if (n == 1) return cad_trigamma(x);
    if (x != x) return x;
    if (x == INFINITY) return 0;
    for (k = 2; k <= n && k < 200; k++) f *= k;
    return ((long long)n % 2 ? f : -f) * cad_hzeta(n + 1, x);
}
CAD_SPF float cad_polygammaf(float n, float x) { return (float)cad_polygamma(n, x); }
/* ---- scipy.special's elementwise functions (cad.scipy.special) ---- */

/* gamma: tgamma (scipy's values: +-inf at +-0, nan at the negative integers, 0
 * where it underflows) */
CAD_SPF double cad_gamma(double x) { return tgamma(x); }
CAD_SPF float cad_gammaf(float x) { return (float)tgamma((double)x); }

/* 1/gamma: 0 at the poles (the sign of a zero x kept, as scipy), at +-inf */
CAD_SPF double cad_rgamma(double x) {
    if (x != x) return x;
    if (x == 0) return x;
    if (x < 0 && x == floor(x)) return 0;   /* -inf included */
    return 1 / tgamma(x);
}
CAD_SPF float cad_rgammaf(float x) { return (float)cad_rgamma(x); }

/* the sign of gamma: 1 for x > 0 and +0, -1 at -0, nan at the negative integers */
CAD_SPF double cad_gammasgn(double x) {
    if (x != x) return x;
    if (x == 0) return copysign(1.0, x);
    if (x > 0) return 1;
    if (x == floor(x)) return NAN;
    return fmod(floor(x), 2.0) == 0 ? 1 : -1;
}
CAD_SPF float cad_gammasgnf(float x) { return (float)cad_gammasgn(x); }

/* log erfc(x) for x >= 0: erfc itself below 25, above the asymptotic series
 * erfc(x) = exp(-x^2) / (x sqrt(pi)) sum_k (-1)^k (2k-1)!! / (2 x^2)^k (10 terms:
 * the next is below 1e-18 at x = 25), so no underflow */
CAD_SPF double cad_log_erfc_pos(double x) {
    double z, s = 1, t = 1;
    int k;
    if (x < 25) return log(erfc(x));
    z = 1 / (2 * x * x);
    for (k = 1; k <= 10; k++) {
        t *= -(2 * k - 1) * z;
        s += t;
    }
    return -x * x - log(x * 1.7724538509055160) + log(s);
}

/* erfcinv(y), 0 <= y <= 2: erfinv(1 - y) where 1 - y is exact (0.5 <= y <= 1.5);
 * in the tails (y < 0.5, and 2 - y for y > 1.5, exact) Newton's method on
 * log erfc(x) = log y from Abramowitz-Stegun 26.2.23's guess (error < 5e-4), so
 * y down to the smallest subnormal keeps full precision.  (scipy takes the normal
 * quantile of y / 2: inf for the smallest subnormal y, where this is 27.2.) */
CAD_SPF double cad_erfcinv(double y) {
    double s = 1, w, t, x, L, r, dx;
    int k;
    if (!(y >= 0 && y <= 2)) return NAN;
    if (y >= 0.5 && y <= 1.5) return cad_erfinv(1 - y);
    if (y > 1.5) {
        y = 2 - y;
        s = -1;
    }
    if (y == 0) return s * INFINITY;
    w = log(y);
    t = sqrt(-2 * (w - 0.6931471805599453));
    x = 0.7071067811865476 * (t - (2.515517 + t * (0.802853 + t * 0.010328))
                              / (1 + t * (1.432788 + t * (0.189269 + t * 0.001308))));
    for (k = 0; k < 12; k++) {   /* log erfc is concave: monotone, quadratic convergence */
        L = cad_log_erfc_pos(x);
        r = 1.1283791670955126 * exp(-x * x - L);   /* -(log erfc)'(x) */
        dx = (L - w) / r;
        x += dx;
        if (fabs(dx) <= 1e-16 * x) break;
    }
    return s * x;
}
CAD_SPF float cad_erfcinvf(float y) { return (float)cad_erfcinv(y); }

/* the normal CDF erfc(-x/sqrt2)/2: x/sqrt2 is rounded, and erfc's relative error
 * from it grows as 2 z^2 ulp (1e-13 at z = 26), so its low part dz (fma, and the
 * constant's) corrects to first order: erfc(z + dz) = erfc(z) - 2/sqrt(pi) e^-z^2 dz */
CAD_SPF double cad_ndtr(double x) {
    double z = -0.7071067811865476 * x, dz;
    if (fabs(x) == INFINITY) return x > 0;
    dz = fma(-0.7071067811865476, x, -z) + 4.833646656726457e-17 * x;
    return 0.5 * erfc(z) - 0.5641895835477563 * exp(-z * z) * dz;
}
CAD_SPF float cad_ndtrf(float x) { return (float)cad_ndtr(x); }

/* logit: log(x / (1 - x)), near 1/2 log1p(2s / (1 - s)) with s = 2x - 1 (scipy) */
CAD_SPF double cad_logit(double x) {
    if (x > 0.3 && x < 0.65) return log1p(2 * (2 * x - 1) / (2 - 2 * x));
    return log(x / (1 - x));
}
CAD_SPF float cad_logitf(float x) { return (float)cad_logit(x); }

/* log of the normal CDF: log1p(-Phi(-x)) for x >= 0, log Phi(x) down to -20, then
 * the asymptotic series Phi(x) = phi(x)/|x| sum_k (-1)^k (2k-1)!!/x^2k (13 terms:
 * the next is below 1e-18 at x = -20) */
CAD_SPF double cad_log_ndtr(double x) {
    double z, s = 1, t = 1;
    int k;
    if (x != x) return x;
    if (x >= 0) return log1p(-cad_ndtr(-x));
    if (x > -20) return log(cad_ndtr(x));
    z = 1 / (x * x);
    for (k = 1; k <= 13; k++) {
        t *= -(2 * k - 1) * z;
        s += t;
    }
    return -0.5 * x * x - log(-x) - 0.9189385332046728 + log(s);
}
CAD_SPF float cad_log_ndtrf(float x) { return (float)cad_log_ndtr(x); }

/* the normal quantile: sqrt2 erfinv(2p - 1) in [0.25, 0.75] (2p - 1 exact), the
 * tails through erfcinv of 2p or 2(1 - p) (both exact) */
CAD_SPF double cad_ndtri(double p) {
    if (!(p >= 0 && p <= 1)) return NAN;
    if (p < 0.25) return -1.4142135623730951 * cad_erfcinv(2 * p);
    if (p > 0.75) return 1.4142135623730951 * cad_erfcinv(2 * (1 - p));
    return 1.4142135623730951 * cad_erfinv(2 * p - 1);
}
CAD_SPF float cad_ndtrif(float p) { return (float)cad_ndtri(p); }

/* Bessel functions of the first and second kind: <math.h>'s (glibc, CUDA), in
 * double for float too; as scipy, y of x < 0 is nan and of 0 is -inf, and every
 * one is nan at +-inf */
CAD_SPF double cad_j0(double x) { return fabs(x) == INFINITY ? NAN : j0(x); }
CAD_SPF float cad_j0f(float x) { return (float)cad_j0(x); }
CAD_SPF double cad_j1(double x) { return fabs(x) == INFINITY ? NAN : j1(x); }
CAD_SPF float cad_j1f(float x) { return (float)cad_j1(x); }
CAD_SPF double cad_y0(double x) {
    return x < 0 || x == INFINITY ? NAN : (x == 0 ? -INFINITY : y0(x));
}
CAD_SPF float cad_y0f(float x) { return (float)cad_y0(x); }
CAD_SPF double cad_y1(double x) {
    return x < 0 || x == INFINITY ? NAN : (x == 0 ? -INFINITY : y1(x));
}
CAD_SPF float cad_y1f(float x) { return (float)cad_y1(x); }
/* integer order n (J_-n = (-1)^n J_n, the same for Y: CUDA's jn, yn take n >= 0).
 * jn: nan for a non-integer n (scipy's jn is jv there); yn truncates n (scipy) */
CAD_SPF double cad_jn(double n, double x) {
    int k;
    double s = 1;
    if (n != floor(n) || fabs(n) > 1e9 || x != x || fabs(x) == INFINITY) return NAN;
    k = (int)fabs(n);
    if (n < 0 && (k & 1)) s = -1;
    return s * jn(k, x);
}
CAD_SPF float cad_jnf(float n, float x) { return (float)cad_jn(n, x); }
CAD_SPF double cad_yn(double n, double x) {
    int k;
    double s = 1;
    if (!(fabs(n) <= 1e9) || x != x || fabs(x) == INFINITY) return NAN;
    k = (int)fabs(n);   /* truncated */
    if (n < 0 && (k & 1)) s = -1;
    if (x < 0) return NAN;
    if (x == 0) return -s * INFINITY;
    return s * yn(k, x);
}
CAD_SPF float cad_ynf(float n, float x) { return (float)cad_yn(n, x); }

/* a Chebyshev series sum' c_k T_k(t) (half the constant term), c highest first
 * (Clenshaw) */
CAD_SPF double cad_cheb(double t, const double *c, int n) {
    double b0 = c[0], b1 = 0, b2 = 0;
    int i;
    for (i = 1; i < n; i++) {
        b2 = b1;
        b1 = b0;
        b0 = 2 * t * b1 - b2 + c[i];
    }
    return 0.5 * (b0 - b2);
}

/* the exponentially scaled modified Bessel functions exp(-|x|) I0(x), exp(-|x|) I1(x):
 * Chebyshev expansions (coefficients computed with mpmath, tools/bessel_cheb.py, as
 * Cephes' i0e/i1e) of exp(-x) I0(x) and exp(-x) I1(x) / x on [0, 8] in
 * t = x/4 - 1, of sqrt(x) exp(-x) I0(x) and sqrt(x) exp(-x) I1(x) for x > 8 in
 * t = 16/x - 1 */
CAD_SPF double cad_i0e(double x) {
    const double A[30] = {
        -4.4153416464793395e-18, 3.3307945188222384e-17, -2.431279846547955e-16,
        1.715391285555133e-15, -1.1685332877993451e-14, 7.676185498604936e-14,
        -4.856446783111929e-13, 2.95505266312964e-12, -1.726826291441556e-11,
        9.675809035373237e-11, -5.189795601635263e-10, 2.6598237246823866e-09,
        -1.300025009986248e-08, 6.046995022541919e-08, -2.670793853940612e-07,
        1.1173875391201037e-06, -4.4167383584587505e-06, 1.6448448070728896e-05,
        -5.754195010082104e-05, 0.00018850288509584165, -0.0005763755745385824,
        0.0016394756169413357, -0.004324309995050576, 0.010546460394594998,
        -0.02373741480589947, 0.04930528423967071, -0.09490109704804764, 0.17162090152220877,
        -0.3046826723431984, 0.6767952744094761};
    const double B[27] = {
        1.193650890845982e-18, 9.921475412173699e-19, -7.233180487874754e-18,
        -4.830504485944182e-18, 4.46562142029676e-17, 3.461222867697461e-17,
        -2.8276239805165836e-16, -3.425485619677219e-16, 1.7725601330565263e-15,
        3.8116806693526224e-15, -9.554846698828307e-15, -4.150569347287222e-14,
        1.54008621752141e-14, 3.8527783827421426e-13, 7.180124451383666e-13,
        -1.7941785315068062e-12, -1.3215811840447713e-11, -3.1499165279632416e-11,
        1.1889147107846439e-11, 4.94060238822497e-10, 3.3962320257083865e-09,
        2.266668990498178e-08, 2.0489185894690638e-07, 2.8913705208347567e-06,
        6.889758346916825e-05, 0.0033691164782556943, 0.8044904110141088};
    double a = fabs(x);
    if (a <= 8) return cad_cheb(0.25 * a - 1, A, 30);
    return cad_cheb(16 / a - 1, B, 27) / sqrt(a);
}
CAD_SPF float cad_i0ef(float x) { return (float)cad_i0e(x); }
CAD_SPF double cad_i1e(double x) {
    const double A[30] = {
        -3.541581772542136e-19, 2.7779141127610464e-18, -2.111421214358166e-17,
        1.5536319577362005e-16, -1.1055969477353862e-15, 7.600684294735408e-15,
        -5.042185504727912e-14, 3.223793365945575e-13, -1.9839743977649436e-12,
        1.1736186298890901e-11, -6.663489723502027e-11, 3.625590281552117e-10,
        -1.8872497517228294e-09, 9.381537386495773e-09, -4.445059128796328e-08,
        2.0032947535521353e-07, -8.568720264695455e-07, 3.4702513081376785e-06,
        -1.3273163656039436e-05, 4.781565107550054e-05, -0.00016176081582589674,
        0.0005122859561685758, -0.0015135724506312532, 0.004156422944312888,
        -0.010564084894626197, 0.024726449030626516, -0.05294598120809499, 0.1026436586898471,
        -0.17641651835783406, 0.25258718644363365};
    const double B[27] = {
        -1.242193275194891e-18, -9.314178867326884e-19, 7.517296310842105e-18,
        4.414348323071708e-18, -4.6503053684893586e-17, -3.209525921993424e-17,
        2.96262899764595e-16, 3.3082023109209285e-16, -1.8803547755107825e-15,
        -3.8144030724370075e-15, 1.0420276984128802e-14, 4.272440016711951e-14,
        -2.1015418427726643e-14, -4.0835511110921974e-13, -7.198551776245908e-13,
        2.0356285441470896e-12, 1.4125807436613782e-11, 3.2526035830154884e-11,
        -1.8974958123505413e-11, -5.589743462196584e-10, -3.835380385964237e-09,
        -2.6314688468895196e-08, -2.512236237870209e-07, -3.882564808877691e-06,
        -0.00011058893876262371, -0.009761097491361469, 0.7785762350182801};
    double a = fabs(x), z;
    if (a <= 8) z = cad_cheb(0.25 * a - 1, A, 30) * a;
    else z = cad_cheb(16 / a - 1, B, 27) / sqrt(a);
    return x < 0 ? -z : z;
}
CAD_SPF float cad_i1ef(float x) { return (float)cad_i1e(x); }
/* I0 = exp(|x|) i0e, I1 = exp(|x|) i1e: inf from |x| = 709.78 (exp's overflow),
 * nan at +-inf (scipy) */
CAD_SPF double cad_i0(double x) {
    double a = fabs(x);
    return a == INFINITY ? NAN : exp(a) * cad_i0e(x);
}
CAD_SPF float cad_i0f(float x) { return (float)cad_i0(x); }
CAD_SPF double cad_i1(double x) {
    double a = fabs(x);
    return a == INFINITY ? NAN : exp(a) * cad_i1e(x);
}
CAD_SPF float cad_i1f(float x) { return (float)cad_i1(x); }
#endif
