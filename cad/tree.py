"""Pytrees: nested tuples, lists, dicts (and namedtuples) of tensors, as JAX.

Every transform (grad, value_and_grad, vjp, jvp, jacrev, jacfwd, hessian, vmap,
cad.record) takes and returns such structures: a model's parameters as a dict.
The containers are the nodes; None is an empty node (it holds no leaf, as in JAX);
everything else (a tensor, a number, an array) is a leaf.  Dict keys are kept in
sorted order when flattening (JAX's rule), so two dicts with the same keys flatten
the same way whatever their insertion order.

Written here rather than taken from a library: optree and jax.tree_util would make
cad depend on a C++ extension or on JAX for sixty lines of code.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional, Tuple


class TreeDef:
    """The structure of a pytree without its leaves (hashable, comparable)."""
    __slots__ = ("children", "kind", "meta", "num_leaves")

    def __init__(self, kind, meta, children):
        self.kind = kind            # None (a leaf), tuple, list, dict, a namedtuple class, or "none"
        self.meta = meta            # dict: its sorted keys
        self.children = children
        self.num_leaves = 1 if kind is None else sum(c.num_leaves for c in children)

    def _key(self):
        return (self.kind, self.meta, tuple(c._key() for c in self.children))

    def __eq__(self, other):
        return isinstance(other, TreeDef) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        if self.kind is None:
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind is dict:
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children)) + "}"
        if self.kind is list:
            return f"[{inner}]"
        if self.kind is tuple:
            return f"({inner}{',' if len(self.children) == 1 else ''})"
        return f"{self.kind.__name__}({inner})"


_LEAF = TreeDef(None, None, ())
LEAF = _LEAF   # the structure of a single leaf


def _is_namedtuple(x):
    return isinstance(x, tuple) and type(x) is not tuple and hasattr(type(x), "_fields")


def _node(x):
    """(kind, meta, children) of a container, or None for a leaf"""
    t = type(x)
    if t is tuple or t is list:
        return t, None, list(x)
    if t is dict:
        try:
            keys = tuple(sorted(x))
        except TypeError:
            keys = tuple(x)
        return dict, keys, [x[k] for k in keys]
    if x is None:
        return "none", None, []
    if _is_namedtuple(x):
        return t, None, list(x)
    return None


_CONTAINERS = (tuple, list, dict)


def tree_flatten(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None) -> Tuple[List[Any], TreeDef]:
    """(leaves, treedef): the leaves left to right and the structure."""
    if is_leaf is None and tree is not None and not isinstance(tree, _CONTAINERS):
        return [tree], _LEAF   # a single leaf (the common case), without the walk
    leaves: List[Any] = []
    return leaves, _flatten(tree, is_leaf, leaves)


# The walks are module functions with their state passed in, not closures calling
# themselves: such a closure is a reference cycle (its cell holds it) that kept the
# leaves, and so every tape under them, alive until the garbage collector ran.

def _flatten(x, is_leaf, leaves):
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return _LEAF
    n = _node(x)
    if n is None:
        leaves.append(x)
        return _LEAF
    kind, meta, ch = n
    return TreeDef(kind, meta, tuple(_flatten(c, is_leaf, leaves) for c in ch))


def _unflatten(d, it):
    if d.kind is None:
        return next(it)
    if d.kind == "none":
        return None
    ch = [_unflatten(c, it) for c in d.children]
    if d.kind is dict:
        return dict(zip(d.meta, ch))
    if d.kind is list:
        return ch
    if d.kind is tuple:
        return tuple(ch)
    return d.kind(*ch)


def tree_unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """The pytree of structure treedef holding leaves (in tree_flatten's order)."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree_unflatten: {len(leaves)} leaves for a structure with "
                         f"{treedef.num_leaves}: {treedef!r}")
    return _unflatten(treedef, iter(leaves))


def tree_leaves(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None) -> List[Any]:
    if is_leaf is None and tree is not None and not isinstance(tree, _CONTAINERS):
        return [tree]
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Optional[Callable[[Any], bool]] = None) -> TreeDef:
    return tree_flatten(tree, is_leaf)[1]


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any,
             is_leaf: Optional[Callable[[Any], bool]] = None) -> Any:
    """f applied leaf by leaf; rest are trees of the same structure as tree."""
    if not rest and is_leaf is None and tree is not None and not isinstance(tree, _CONTAINERS):
        return f(tree)
    leaves, d = tree_flatten(tree, is_leaf)
    others = []
    for k, r in enumerate(rest):
        lv, dr = tree_flatten(r, is_leaf)
        if dr != d:
            raise ValueError(f"tree_map: tree {k + 1} has structure {dr!r}, the first has {d!r}")
        others.append(lv)
    return tree_unflatten(d, [f(*xs) for xs in zip(leaves, *others)])


def broadcast_prefix(prefix, tree, what="in_dims", is_leaf=None):
    """the leaves of prefix, one per leaf of tree: prefix is a tree whose leaves
    stand for whole subtrees of tree (JAX's in_dims/out_dims rule)"""
    out: List[Any] = []
    _prefix(prefix, tree, "", what, is_leaf, out)
    return out


def _prefix(p, t, path, what, is_leaf, out):
    n = None if p is None or (is_leaf is not None and is_leaf(p)) else _node(p)
    if n is None:   # a leaf of the prefix (None too) stands for the whole subtree
        out.extend([p] * tree_flatten(t, is_leaf)[1].num_leaves)
        return
    kind, meta, pch = n
    tn = _node(t)
    if tn is None or tn[0] != kind or tn[1] != meta or len(tn[2]) != len(pch):
        raise ValueError(f"{what}: the structure {tree_structure(p)!r} at {path or 'the top'} "
                         f"does not match the argument's {tree_structure(t)!r}")
    for k, (pc, tc) in enumerate(zip(pch, tn[2])):
        _prefix(pc, tc, f"{path}[{meta[k]!r}]" if kind is dict else f"{path}[{k}]", what, is_leaf, out)
