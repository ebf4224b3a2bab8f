"""W14: ADBench (Srajer, Kukelova and Fitzgibbon 2018): GMM and bundle adjustment.

The objectives are written as ADBench's Python modules (src/python/modules/PyTorch/
gmm_objective.py, ba_objective.py) write them, vectorized over the points and the
observations as its vectorized (PyTorchVmap) module is; float64 throughout.

(a) GMM gradient: d/d(alphas, means, icf) of ADBench's objective
    -n d/2 log 2pi + sum_n logsumexp_k(alpha_k + sum(icf_k[:d]) - 0.5 |Q_k (x_n - mu_k)|^2)
    - n logsumexp(alpha) + the Wishart prior (gamma = 1, m = 0, ADBench's values)
with Q_k = diag(exp(icf_k[:d])) + L_k, L_k the strictly lower triangle filled column by
column from icf_k[d:] (ADBench's constructL; here one gather from icf padded with a
zero column instead of its per-component torch.cat loop).  d=10 K=25 and d=64 K=50,
n=1000 points each.  hand = numpy with the gradient by hand (responsibilities, then
dF/dQ = -sum_n r z (x - mu)^T).

(b) BA residual at ADBench's ba1 size (21 cameras, 11315 points, 36455 observations,
random data from a fixed seed): the reprojection error w_i (project(cam, X) - feat_i)
of every observation (Rodrigues rotation, radial distortion, focal, principal point),
the cameras and points gathered by the observations' indices, and the weight error
1 - w^2.  Forward only, as ADBench's "objective" test; hand = the same numpy.

(c) BA Jacobian: the 2 x 15 block d(reprojection error)/d(camera 11, point 3,
weight 1) of every observation, as two pullbacks over all observations at once
(cotangents [1, 0] and [0, 1] in every row) with respect to the gathered cameras,
points and weights: cad.vjp, torch.autograd.grad twice (retain_graph), jax.vjp; hand =
numpy with the block written out (the Rodrigues rotation's derivative included).
"""
import math

import numpy as np

from .harness import Case

# ---------------------------------------------------------------- (a) GMM

WISHART_GAMMA, WISHART_M = 1.0, 0        # ADBench's gmm data files


def lower_positions(d):
    """(rows, cols) of L's strictly lower entries in icf[d:]'s order (column by column)"""
    rows, cols = [], []
    for c in range(d):
        for r in range(c + 1, d):
            rows.append(r)
            cols.append(c)
    return np.array(rows), np.array(cols)


def gmm_data(d=10, k=25, n=1000, seed=14):
    def make():
        from scipy.special import multigammaln
        rng = np.random.default_rng(seed)
        rows, cols = lower_positions(d)
        tri = np.full(d * d, d + len(rows))               # the zero column of icf padded
        tri[rows * d + cols] = d + np.arange(len(rows))
        nw = d + WISHART_M + 1
        C = nw * d * math.log(WISHART_GAMMA / math.sqrt(2))
        return {"x": rng.uniform(size=(n, d)), "alphas": rng.normal(size=k),
                "means": rng.uniform(size=(k, d)),
                "icf": np.concatenate([rng.normal(scale=0.1, size=(k, d)),
                                       rng.normal(scale=0.3 / math.sqrt(d), size=(k, len(rows)))], 1),
                "tri": tri, "rows": rows, "cols": cols,
                # the terms without parameters: -n d/2 log 2pi and the prior's -K (C - log Gamma_d(nw/2))
                "const": -n * d * 0.5 * math.log(2 * math.pi) - k * (C - multigammaln(0.5 * nw, d))}
    return make


def gmm_objective(alphas, means, icf, x, tri, const, xp, lse, concat, zeros):
    """ADBench's gmm_objective for an array library xp (exp, sum, matmul, swapaxes);
    lse(x, axis), concat(list, axis) and zeros(shape) where the libraries differ"""
    n, d = x.shape
    k = alphas.shape[0]
    Qdiags = xp.exp(icf[:, :d])
    sum_qs = xp.sum(icf[:, :d], axis=1)
    Ls = concat([icf, zeros((k, 1))], 1)[:, tri].reshape(k, d, d)   # constructL, every component
    xcentered = x[None] - means[:, None]                             # (K, n, d)
    Lxcentered = Qdiags[:, None] * xcentered + xp.matmul(xcentered, xp.swapaxes(Ls, 1, 2))  # Qtimesx
    sqsum_Lxcentered = xp.sum(Lxcentered ** 2, axis=2)               # (K, n)
    inner_term = alphas[:, None] + sum_qs[:, None] - 0.5 * sqsum_Lxcentered
    slse = xp.sum(lse(inner_term, 0))
    prior = xp.sum(0.5 * WISHART_GAMMA * WISHART_GAMMA
                   * (xp.sum(Qdiags ** 2, axis=1) + xp.sum(icf[:, d:] ** 2, axis=1))
                   - WISHART_M * sum_qs)                             # log_wishart_prior
    return const + slse - n * lse(alphas, 0) + prior


def gmm_hand(dd):
    x, alphas, means, icf = dd["x"], dd["alphas"], dd["means"], dd["icf"]
    rows, cols = dd["rows"], dd["cols"]
    n, d = x.shape
    k = len(alphas)
    diag = np.arange(d)
    g2 = WISHART_GAMMA * WISHART_GAMMA

    def step():
        q = np.exp(icf[:, :d])
        Q = np.zeros((k, d, d))
        Q[:, rows, cols] = icf[:, d:]
        Q[:, diag, diag] = q
        xc = x[None] - means[:, None]                         # (K, n, d)
        z = xc @ np.swapaxes(Q, 1, 2)                         # Q (x - mu)
        inner = (alphas + icf[:, :d].sum(1))[:, None] - 0.5 * np.sum(z * z, axis=2)
        r = np.exp(inner - inner.max(0))
        r /= r.sum(0)                                         # responsibilities (K, n)
        R = r.sum(1)
        sa = np.exp(alphas - alphas.max())
        rz = r[:, :, None] * z
        G = -(np.swapaxes(rz, 1, 2) @ xc)                     # dF/dQ_k (K, d, d)
        gicf = np.empty_like(icf)
        gicf[:, :d] = G[:, diag, diag] * q + R[:, None] + g2 * q * q - WISHART_M
        gicf[:, d:] = G[:, rows, cols] + g2 * icf[:, d:]
        return R - n * sa / sa.sum(), (rz.sum(1)[:, None, :] @ Q)[:, 0], gicf
    return step


def _gmm_cad_parts(dd):
    """cad's objective f(alphas, means, icf) and its three arguments"""
    import cad
    x = cad.tensor(dd["x"])
    tri, const = dd["tri"], dd["const"]

    def f(a, m, icf):
        return gmm_objective(a, m, icf, x, tri, const, cad, cad.logsumexp, cad.concatenate, cad.zeros)
    return f, (cad.tensor(dd["alphas"]), cad.tensor(dd["means"]), cad.tensor(dd["icf"]))


def gmm_cad(dd):
    import cad
    f, args = _gmm_cad_parts(dd)
    g = cad.grad(f, argnums=(0, 1, 2))
    return lambda: g(*args)


def gmm_cad_replay(dd):
    """the same gradient from a tape recorded once (cad.record), replayed in C"""
    import cad
    f, args = _gmm_cad_parts(dd)
    tape = cad.record(f, *args)
    return lambda: tape.grad(*args)


def gmm_torch(dd):
    import torch
    x, tri, const = torch.tensor(dd["x"]), torch.tensor(dd["tri"]), dd["const"]
    zeros = lambda shape: torch.zeros(shape, dtype=torch.float64)  # noqa: E731

    def step():
        a = torch.tensor(dd["alphas"], requires_grad=True)
        m = torch.tensor(dd["means"], requires_grad=True)
        icf = torch.tensor(dd["icf"], requires_grad=True)
        f = gmm_objective(a, m, icf, x, tri, const, torch, torch.logsumexp, torch.cat, zeros)
        return torch.autograd.grad(f, (a, m, icf))
    return step


def _gmm_jax(jit):
    def setup(dd):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp
        x, tri, const = jnp.asarray(dd["x"]), jnp.asarray(dd["tri"]), dd["const"]
        g = jax.grad(lambda a, m, icf: gmm_objective(a, m, icf, x, tri, const, jnp, logsumexp,
                                                     jnp.concatenate, jnp.zeros),
                     argnums=(0, 1, 2))
        if jit:
            g = jax.jit(g)
        a, m, icf = (jnp.asarray(dd[k]) for k in ("alphas", "means", "icf"))
        return lambda: jax.block_until_ready(g(a, m, icf))
    return setup


# ---------------------------------------------------------------- (b, c) bundle adjustment

BA1 = (21, 11315, 36455)     # ADBench's ba1_n21_m11315_p36455


def ba_data(n=BA1[0], m=BA1[1], p=BA1[2], seed=14):
    def make():
        rng = np.random.default_rng(seed)
        cams = np.empty((n, 11))
        cams[:, 0:3] = rng.normal(scale=0.3, size=(n, 3))          # rotation (Rodrigues)
        cams[:, 3:6] = rng.normal(size=(n, 3))                     # center
        cams[:, 6] = rng.uniform(400.0, 600.0, n)                  # focal
        cams[:, 7:9] = rng.normal(scale=5.0, size=(n, 2))          # principal point
        cams[:, 9] = rng.normal(scale=0.05, size=n)                # radial distortion
        cams[:, 10] = rng.normal(scale=0.01, size=n)
        X = rng.normal(size=(m, 3)) + np.array([0.0, 0.0, 8.0])   # in front of the cameras
        obs = np.stack([rng.integers(0, n, p), rng.integers(0, m, p)], 1)
        obs[:min(p, m), 1] = rng.permutation(m)[:min(p, m)]        # every point observed
        return {"cams": cams, "X": X, "w": rng.uniform(0.5, 1.5, p), "obs": obs,
                "feats": rng.normal(scale=50.0, size=(p, 2))}
    return make


def project(cams, X, xp, cross):
    """ADBench's project(cam, X) for every row: rodrigues_rotate_point (theta != 0, as
    for every random camera), radial_distort, focal and principal point"""
    rot = cams[:, 0:3]
    Y = X - cams[:, 3:6]
    sqtheta = xp.sum(rot ** 2, axis=1, keepdims=True)
    theta = xp.sqrt(sqtheta)
    costheta, sintheta = xp.cos(theta), xp.sin(theta)
    w = (1.0 / theta) * rot
    w_cross_X = cross(w, Y)
    tmp = xp.sum(w * Y, axis=1, keepdims=True) * (1.0 - costheta)
    Xcam = Y * costheta + w_cross_X * sintheta + w * tmp
    proj = Xcam[:, 0:2] / Xcam[:, 2:3]
    rsq = xp.sum(proj ** 2, axis=1, keepdims=True)
    L = 1.0 + cams[:, 9:10] * rsq + cams[:, 10:11] * rsq * rsq
    return proj * L * cams[:, 6:7] + cams[:, 7:9]


def reproj_err(cams, X, w, feats, xp, cross):
    return w[:, None] * (project(cams, X, xp, cross) - feats)


def _np_cross(a, b):
    return np.cross(a, b)


def ba_res_hand(dd):
    cams, X, w, obs, feats = dd["cams"], dd["X"], dd["w"], dd["obs"], dd["feats"]
    ci, pi = obs[:, 0], obs[:, 1]
    return lambda: (reproj_err(cams[ci], X[pi], w, feats, np, _np_cross), 1.0 - w ** 2)


def _ba_cad_inputs(dd):
    """cams, X, w, feats as cad tensors and the observations' camera and point indices"""
    import cad
    cams, X, w, feats = (cad.tensor(dd[k]) for k in ("cams", "X", "w", "feats"))
    return cams, X, w, feats, dd["obs"][:, 0], dd["obs"][:, 1]


def _ba_cotangents(p):
    """the two pullbacks' cotangents: every observation's [1, 0], then [0, 1]"""
    return np.tile([1.0, 0.0], (p, 1)), np.tile([0.0, 1.0], (p, 1))


def ba_res_cad(dd):
    import cad
    cams, X, w, feats, ci, pi = _ba_cad_inputs(dd)
    return lambda: (reproj_err(cams[ci], X[pi], w, feats, cad, cad.cross), 1.0 - w ** 2)


def ba_res_cad_replay(dd):
    """the residuals from a tape recorded once (the gathers recorded too), replayed"""
    import cad
    cams, X, w, feats, ci, pi = _ba_cad_inputs(dd)
    tape = cad.record(lambda c, x, w: (reproj_err(c[ci], x[pi], w, feats, cad, cad.cross), 1.0 - w ** 2),
                      cams, X, w)
    return lambda: tape(cams, X, w)


def ba_res_torch(dd):
    import torch
    cams, X, w, feats = (torch.tensor(dd[k]) for k in ("cams", "X", "w", "feats"))
    ci, pi = torch.tensor(dd["obs"][:, 0]), torch.tensor(dd["obs"][:, 1])
    cross = lambda a, b: torch.cross(a, b, dim=1)  # noqa: E731

    def step():
        with torch.no_grad():
            return reproj_err(cams[ci], X[pi], w, feats, torch, cross), 1.0 - w ** 2
    return step


def _ba_res_jax(jit):
    def setup(dd):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        cams, X, w, feats = (jnp.asarray(dd[k]) for k in ("cams", "X", "w", "feats"))
        ci, pi = jnp.asarray(dd["obs"][:, 0]), jnp.asarray(dd["obs"][:, 1])

        def f(cams, X, w):
            return reproj_err(cams[ci], X[pi], w, feats, jnp, jnp.cross), 1.0 - w ** 2
        if jit:
            f = jax.jit(f)
        return lambda: jax.block_until_ready(f(cams, X, w))
    return setup


def _skew(v):
    """[v]_x for every row: (p, 3) -> (p, 3, 3)"""
    S = np.zeros(v.shape[:1] + (3, 3))
    S[:, 0, 1], S[:, 0, 2] = -v[:, 2], v[:, 1]
    S[:, 1, 0], S[:, 1, 2] = v[:, 2], -v[:, 0]
    S[:, 2, 0], S[:, 2, 1] = -v[:, 1], v[:, 0]
    return S


def ba_jac_hand(dd):
    cams, X, w, obs, feats = dd["cams"], dd["X"], dd["w"], dd["obs"], dd["feats"]
    ci, pi = obs[:, 0], obs[:, 1]
    I2, I3 = np.eye(2), np.eye(3)

    def step():
        cg, Xg = cams[ci], X[pi]
        p = len(w)
        r, Y, f, k0, k1 = cg[:, 0:3], Xg - cg[:, 3:6], cg[:, 6:7], cg[:, 9:10], cg[:, 10:11]
        th = np.sqrt(np.sum(r * r, axis=1, keepdims=True))
        u = r / th
        cs, sn = np.cos(th), np.sin(th)
        uY = np.sum(u * Y, axis=1, keepdims=True)
        uxY = np.cross(u, Y)
        Xcam = Y * cs + uxY * sn + u * uY * (1.0 - cs)
        z = Xcam[:, 2:3]
        pr = Xcam[:, 0:2] / z
        rsq = np.sum(pr * pr, axis=1, keepdims=True)
        Ld = 1.0 + k0 * rsq + k1 * rsq * rsq
        dist = pr * Ld
        wv = w[:, None]
        # d err / d pr, d pr / d Xcam, then d err / d Xcam (p, 2, 3)
        Dp = (wv * f)[:, :, None] * (Ld[:, :, None] * I2
                                     + (2.0 * (k0 + 2.0 * k1 * rsq))[:, :, None] * pr[:, :, None] * pr[:, None, :])
        dpdX = np.zeros((p, 2, 3))
        dpdX[:, 0, 0] = dpdX[:, 1, 1] = 1.0 / z[:, 0]
        dpdX[:, :, 2] = -pr / z
        A = Dp @ dpdX
        # Xcam = R(r) Y: dXcam/dY = R, dXcam/dr through theta and u = r / theta
        uuT = u[:, :, None] * u[:, None, :]
        R = cs[:, :, None] * I3 + sn[:, :, None] * _skew(u) + (1.0 - cs)[:, :, None] * uuT
        dXdr = ((-sn * Y + cs * uxY + sn * uY * u)[:, :, None] * u[:, None, :]
                + (-sn[:, :, None] * _skew(Y) + (1.0 - cs)[:, :, None]
                   * (uY[:, :, None] * I3 + u[:, :, None] * Y[:, None, :]))
                @ ((I3 - uuT) / th[:, :, None]))
        AR = A @ R
        Jc = np.empty((p, 2, 11))
        Jc[:, :, 0:3] = A @ dXdr
        Jc[:, :, 3:6] = -AR
        Jc[:, :, 6] = wv * dist
        Jc[:, :, 7:9] = wv[:, :, None] * I2
        Jc[:, :, 9] = (wv * f) * pr * rsq
        Jc[:, :, 10] = (wv * f) * pr * rsq * rsq
        Jw = dist * f + cg[:, 7:9] - feats
        return Jc[:, 0], AR[:, 0], Jw[:, 0], Jc[:, 1], AR[:, 1], Jw[:, 1]
    return step


def ba_jac_cad(dd):
    import cad
    cams, X, w, feats, ci, pi = _ba_cad_inputs(dd)
    e0, e1 = (cad.tensor(e) for e in _ba_cotangents(len(dd["w"])))
    f = lambda c, x, ww: reproj_err(c, x, ww, feats, cad, cad.cross)  # noqa: E731

    def step():
        _, pullback = cad.vjp(f, cams[ci], X[pi], w)
        return pullback(e0) + pullback(e1)
    return step


def ba_jac_cad_replay(dd):
    """the two pullbacks as two recorded scalar functions (err . e0, err . e1), each
    replayed with one tape.grad; the gathers run eagerly, as in the eager cad row"""
    import cad
    cams, X, w, feats, ci, pi = _ba_cad_inputs(dd)
    tapes = []
    for e in _ba_cotangents(len(dd["w"])):
        e = cad.tensor(e)
        tapes.append(cad.record(lambda c, x, ww, e=e: (reproj_err(c, x, ww, feats, cad, cad.cross) * e).sum(),
                                cams[ci], X[pi], w))

    def step():
        c, x = cams[ci], X[pi]
        return tapes[0].grad(c, x, w) + tapes[1].grad(c, x, w)
    return step


def ba_jac_torch(dd):
    import torch
    cams, X, w0, feats = (torch.tensor(dd[k]) for k in ("cams", "X", "w", "feats"))
    ci, pi = torch.tensor(dd["obs"][:, 0]), torch.tensor(dd["obs"][:, 1])
    e0, e1 = (torch.tensor(e) for e in _ba_cotangents(len(dd["w"])))
    cross = lambda a, b: torch.cross(a, b, dim=1)  # noqa: E731

    def step():
        c = cams[ci].requires_grad_()
        x = X[pi].requires_grad_()
        w = w0.detach().requires_grad_()
        err = reproj_err(c, x, w, feats, torch, cross)
        return (torch.autograd.grad(err, (c, x, w), e0, retain_graph=True)
                + torch.autograd.grad(err, (c, x, w), e1))
    return step


def _ba_jac_jax(jit):
    def setup(dd):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        cams, X, w, feats = (jnp.asarray(dd[k]) for k in ("cams", "X", "w", "feats"))
        ci, pi = jnp.asarray(dd["obs"][:, 0]), jnp.asarray(dd["obs"][:, 1])
        e0, e1 = (jnp.asarray(e) for e in _ba_cotangents(len(dd["w"])))

        def jac(cams, X, w):
            _, pullback = jax.vjp(lambda c, x, ww: reproj_err(c, x, ww, feats, jnp, jnp.cross),
                                  cams[ci], X[pi], w)
            return pullback(e0) + pullback(e1)
        if jit:
            jac = jax.jit(jac)
        return lambda: jax.block_until_ready(jac(cams, X, w))
    return setup


GMM_SIZES = [(10, 25, 1000), (64, 50, 1000)]

CASES_EAGER = [
    Case("W14", f"GMM grad d={d} K={k} n={n}", data=gmm_data(d, k, n), tol=1e-8,
         impls={"hand": gmm_hand, "torch": gmm_torch, "jax": _gmm_jax(False),
                "jax.jit": _gmm_jax(True), "cad": gmm_cad},
         note="W14a (ADBench GMM): d/d(alphas, means, icf) of ADBench's GMM objective (logsumexp over "
              "the components, Wishart prior gamma=1 m=0, Q from log-diagonal + lower-triangular icf), "
              "float64; cad.grad / torch.autograd / jax.grad; hand = numpy with the gradient by hand.")
    for d, k, n in GMM_SIZES
] + [
    Case("W14", "BA residual ba1 (21 cams, 11315 pts, 36455 obs)", data=ba_data(), tol=1e-10,
         impls={"hand": ba_res_hand, "torch": ba_res_torch, "jax": _ba_res_jax(False),
                "jax.jit": _ba_res_jax(True), "cad": ba_res_cad},
         note="W14b (ADBench BA): reprojection error (Rodrigues rotation, radial distortion) of "
              "36455 observations gathered from 21 cameras and 11315 points (random, seed 14), and "
              "the weight error; forward only; hand = the same numpy."),
    Case("W14", "BA Jacobian ba1, 2 pullbacks", data=ba_data(), tol=1e-8,
         impls={"hand": ba_jac_hand, "torch": ba_jac_torch, "jax": _ba_jac_jax(False),
                "jax.jit": _ba_jac_jax(True), "cad": ba_jac_cad},
         note="W14c (ADBench BA): the 2 x 15 block d(reprojection error)/d(camera 11, point 3, weight) "
              "of every ba1 observation as two pullbacks over all observations (cotangents [1,0] and "
              "[0,1]); cad.vjp, torch.autograd.grad x2 (retain_graph), jax.vjp; hand = numpy with the "
              "block written out."),
]


REPLAY_NOTE = ("W14 replayed: cad = tape.grad (BA residual: the tape called; BA Jacobian: two recorded "
               "scalar functions err . e0 and err . e1, one tape.grad each) of a cad.record tape made "
               "once; cad.eager = the eager cad row")


def _replayed(case, replay, name, note=None):
    """issue 14's "replay never slower than eager": as W9, "cad" is the replay of a tape
    recorded once (replay), "cad.eager" the eager case's cad cell; same data and size"""
    return Case(case.workload, name, data=case.data, tol=case.tol,
                impls={"hand": case.impls["hand"], "jax.jit": case.impls["jax.jit"],
                       "cad.eager": case.impls["cad"], "cad": replay}, note=note)


CASES = CASES_EAGER + [
    _replayed(c, gmm_cad_replay, c.name + " replayed", REPLAY_NOTE) for c in CASES_EAGER[:len(GMM_SIZES)]
] + [
    _replayed(CASES_EAGER[-2], ba_res_cad_replay, "BA residual ba1 replayed"),
    _replayed(CASES_EAGER[-1], ba_jac_cad_replay, "BA Jacobian ba1 replayed"),
]
