/* The op table's special functions that <math.h> lacks (NOTE [ Expression
 * vocabulary ] in cad/ops/cexpr.py: CNAMES spells them): sigmoid, numpy's
 * remainder, lgamma without the global signgam, erfinv, digamma, polygamma.
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

CAD_SPF double cad_sigmoid(double x) {
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}
CAD_SPF float cad_sigmoidf(float x) {
    return x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x));
}

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
        if (fabs(u) <= 1e-17 * x) break;
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

/* polygamma(n, x), n a nonnegative integer (nan otherwise): digamma for n = 0,
 * else (-1)^(n+1) n! zeta(n + 1, x) */
CAD_SPF double cad_polygamma(double n, double x) {
    double f = 1;
    int k;
    if (n != floor(n) || n < 0) return NAN;
    if (n == 0) return cad_digamma(x);
    if (x != x) return x;
    if (x == INFINITY) return 0;
    for (k = 2; k <= n && k < 200; k++) f *= k;
    return ((long long)n % 2 ? f : -f) * cad_hzeta(n + 1, x);
}
CAD_SPF float cad_polygammaf(float n, float x) { return (float)cad_polygamma(n, x); }
#endif
