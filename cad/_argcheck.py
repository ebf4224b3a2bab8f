"""Argument checks in front of the transforms (cad/transforms.py): clear messages for
arguments the transforms would otherwise trip over deep inside (a function that
returns None, a single tensor where JAX's signature takes a tuple, a non-callable).
The public cad.grad, cad.jvp, ... are these wrappers; they add one Python call."""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence, Tuple, Union

import numpy as np

from ._core import _engine as C
from . import transforms as T
from .ops._batch import Batched
from .tree import tree_leaves

_OK = (C.Tensor, Batched, float, int, np.ndarray, np.generic)


def _check_callable(f, who):
    if not callable(f):
        raise TypeError(f"{who}: f must be a function, got {type(f).__name__} {f!r:.60}")


def _check_out(out, who, has_aux):
    if has_aux:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"{who}(has_aux=True): f must return a (value, aux) pair, got "
                            f"{type(out).__name__}")
        _check_value(out[0], who)
    else:
        _check_value(out, who)


def _check_value(v, who):
    if type(v) is C.Tensor:   # the common case
        return
    if v is None:
        raise TypeError(f"{who}: f returned None; it must return a tensor (or a number): did it "
                        "forget `return`?")
    leaves = tree_leaves(v, is_leaf=lambda e: e is None)
    for k, e in enumerate(leaves):
        if not isinstance(e, _OK) or isinstance(e, bool):
            where = f"whose leaf {k} is " if len(leaves) > 1 or leaves[0] is not v else "that is "
            raise TypeError(f"{who}: f returned a {type(v).__name__} {where}"
                            f"{'None' if e is None else type(e).__name__}; expected tensors (or "
                            "pytrees of them)")


def _wrap_f(f, who, has_aux=False):
    _check_callable(f, who)

    def checked(*args, **kwargs):
        out = f(*args, **kwargs)
        _check_out(out, who, has_aux)
        return out
    # what functools.wraps copies that anything reads (a name for reprs and tracebacks,
    # the function under it), without its update loop: wraps was ~1 us of a ~20 us
    # cad.grad(f)(x) of a small array function, paid on every cad.grad(f) made
    checked.__wrapped__ = f
    try:
        checked.__name__ = f.__name__
        checked.__qualname__ = f.__qualname__
        checked.__doc__ = f.__doc__
    except (AttributeError, TypeError):   # a callable object, a functools.partial
        pass
    return checked


def _check_argnums(argnums, who):
    if type(argnums) is int:   # the common case
        return
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if isinstance(argnums, bool) or not isinstance(nums, (tuple, list)) or \
            not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
        raise TypeError(f"{who}: argnums must be an int or a tuple of ints, got {argnums!r}")
    if not nums:
        raise ValueError(f"{who}: argnums is empty; pick at least one argument")


def _tuple_arg(v, name, who):
    if not isinstance(v, (tuple, list)):
        raise TypeError(f"{who}: {name} must be a tuple with one entry per argument of f (JAX's "
                        f"signature: {who}(f, (x,), (t,))), got {type(v).__name__}")


@functools.wraps(T.value_and_grad)
def value_and_grad(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
                   has_aux: bool = False) -> Callable[..., Tuple[Any, Any]]:
    _check_argnums(argnums, "value_and_grad")
    return T.value_and_grad(_wrap_f(f, "value_and_grad", has_aux), argnums, has_aux)


@functools.wraps(T.grad)
def grad(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
         has_aux: bool = False) -> Callable[..., Any]:
    _check_argnums(argnums, "grad")
    return T.grad(_wrap_f(f, "grad", has_aux), argnums, has_aux)


@functools.wraps(T.vjp)
def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Tuple[Any, ...]:
    return T.vjp(_wrap_f(f, "vjp", has_aux), *primals, has_aux=has_aux)


@functools.wraps(T.jvp)
def jvp(f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False) -> Tuple[Any, ...]:
    _tuple_arg(primals, "primals", "jvp")
    _tuple_arg(tangents, "tangents", "jvp")
    return T.jvp(_wrap_f(f, "jvp", has_aux), primals, tangents, has_aux)


@functools.wraps(T.jacrev)
def jacrev(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
           has_aux: bool = False) -> Callable[..., Any]:
    _check_argnums(argnums, "jacrev")
    return T.jacrev(_wrap_f(f, "jacrev", has_aux), argnums, has_aux)


@functools.wraps(T.jacfwd)
def jacfwd(f: Callable[..., Any], argnums: Union[int, Sequence[int]] = 0,
           has_aux: bool = False) -> Callable[..., Any]:
    _check_argnums(argnums, "jacfwd")
    return T.jacfwd(_wrap_f(f, "jacfwd", has_aux), argnums, has_aux)


@functools.wraps(T.jacobian)
def jacobian(f: Callable[..., Any], *args: Any, argnums: Union[int, Sequence[int]] = 0) -> Any:
    _check_argnums(argnums, "jacobian")
    return T.jacobian(_wrap_f(f, "jacobian"), *args, argnums=argnums)


@functools.wraps(T.hessian)
def hessian(f: Callable[..., Any], *args: Any, argnums: Union[int, Sequence[int]] = 0) -> Any:
    _check_argnums(argnums, "hessian")
    return T.hessian(_wrap_f(f, "hessian"), *args, argnums=argnums)


@functools.wraps(T.hvp)
def hvp(f: Callable[..., Any], x: Any, v: Any) -> Any:
    return T.hvp(_wrap_f(f, "hvp"), x, v)
