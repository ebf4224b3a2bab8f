"""Moving values between devices: one primitive whose gradient moves back."""
from ._registry import defop

try:
    from .._core import _engine as C
except ImportError:   # the build reads this table before the extension exists
    C = None

TO_DEVICE = defop(
    "to_device", "transfer", kernel="cad_transfer_vjp", method=False, export=False,
    ref=lambda x, dev=0: x,
    doc="to_device(x, dev): x copied to device dev (0 cpu, 1 cuda); aux = [from, to]. "
        "Users call x.to('cuda') / x.cpu().")


@TO_DEVICE.vjp
def _to_device_vjp(ctx, g):
    return [C.to_device(g, ctx.aux[0]) if ctx.wants(0) else None]


@TO_DEVICE.jvp
def _to_device_jvp(ctx, ts):
    return None if ts[0] is None else C.to_device(ts[0], ctx.aux[1])


@TO_DEVICE.eval
def _to_device_eval(ctx, a):
    return C.to_device(a[0], ctx.aux[1])
