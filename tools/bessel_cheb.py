"""The Chebyshev coefficients of cad_i0e / cad_i1e (cad/ops/cad_special.h), computed
with mpmath (not needed by the build): exp(-x) I0(x) and exp(-x) I1(x) / x on [0, 8]
in t = x/4 - 1, sqrt(x) exp(-x) I0(x) and sqrt(x) exp(-x) I1(x) for x > 8 in
t = 16/x - 1; the same expansions as Cephes' i0e/i1e.  Printed highest order first,
terms kept down to 2e-18 of the constant term.

Usage: python tools/bessel_cheb.py
"""
import mpmath as mp

N = 80   # Chebyshev-Gauss nodes


def cheb(f):
    """c_k with f(t) = c_0/2 + sum_k c_k T_k(t) on [-1, 1]"""
    th = [mp.pi * (j + mp.mpf(1) / 2) / N for j in range(N)]
    vals = [f(mp.cos(t)) for t in th]
    cs = [2 * mp.fsum(v * mp.cos(k * t) for v, t in zip(vals, th)) / N for k in range(N)]
    n = max(k for k in range(N) if abs(cs[k]) > 2e-18 * abs(cs[0] / 2)) + 1
    return cs[:n]


FUNCS = {
    "i0e A": lambda t: mp.exp(-4 * (t + 1)) * mp.besseli(0, 4 * (t + 1)),
    "i0e B": lambda t: mp.sqrt(16 / (t + 1)) * mp.exp(-16 / (t + 1)) * mp.besseli(0, 16 / (t + 1)),
    "i1e A": lambda t: mp.exp(-4 * (t + 1)) * mp.besseli(1, 4 * (t + 1)) / (4 * (t + 1)),
    "i1e B": lambda t: mp.sqrt(16 / (t + 1)) * mp.exp(-16 / (t + 1)) * mp.besseli(1, 16 / (t + 1)),
}

if __name__ == "__main__":
    mp.mp.dps = 50
    for name, f in FUNCS.items():
        cs = cheb(f)
        print(f"{name} [{len(cs)}]:", ", ".join(repr(float(c)) for c in reversed(cs)))
