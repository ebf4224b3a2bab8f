"""Benchmarks of cad against numpy by hand (the floor), PyTorch, JAX and HIPS autograd.

Run from the repository root:  python -m bench [--quick] [--only W1,W3] [--json PATH]
Draw it:  python -m bench --plot bench.png, or python -m bench --from PATH --plot bench.png

Workloads: W1 chain of 1000 scalar ops, W2 the seed's scalar program (and its
tensor form), W3 an MLP training step, W4 an elementwise function over 10^7
values, W5 sum((A@B)**2) at 1024x1024, W6 the 256x256 Jacobian of tanh(W@x)
(jacrev, jacfwd, a loop of VJPs), W7 the 128x128 Hessian of
sum(x**3) + sum(tanh(W@x)), W8 the per-example gradients of a 16-16-1 MLP over a
batch of 1000 (vmap of grad, a Python loop of grad, a recorded vmap), W9 "record
once, replay": W1, W2 and W3 on a tape recorded once by cad.record, against
torch.jit.trace, torch.compile, jax.jit and cad without recording ("cad.eager"),
W10 the gradient of a Gaussian-process log-likelihood (linalg), W11 one training
epoch of examples/train_mlp.py's MLP on digits (DataLoader + Adam against torch's,
and a jitted JAX/optax step), W13 gradients through cad.scipy: a mixture of Gaussians'
log-likelihood (stats.multivariate_normal, special.logsumexp) and a Lotka-Volterra fit
through integrate.odeint, against jax.scipy / jax.experimental.ode and torch, W14
ADBench (Srajer et al. 2018): the GMM objective's gradient (d=10 K=25, d=64 K=50,
1000 points), and bundle adjustment at ba1's size (21 cameras, 11315 points, 36455
observations): the residual, and the 2 x 15 Jacobian blocks as two pullbacks, W12
forward mode and second order on W1's chain: jvp, grad(grad(f)), and tape.hvp of
the chain recorded once (against jax.jit(grad(grad(f)))).
Each peer is optional; benchmarks never assert.  (Nothing is imported here, so
that ``--threads`` can set the BLAS environment before numpy loads.)
"""

MODULES = ["w_scalar", "w_mlp", "w_array", "w_transforms", "w_vmap", "w_replay", "w_linalg", "w_train", "w_scipy",
           "w_adbench"]  # each defines CASES
