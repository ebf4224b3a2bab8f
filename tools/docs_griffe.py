"""A griffe extension for the documentation site (mkdocs.yml): the API reference
shows the members a user calls.  mkdocstrings reads cad by importing it (live
objects), which also lists every dunder attribute a class or module carries
(__doc__, __module__, __weakref__, Cython's __pyx_vtable__, the operator methods of
Tensor, which the guides describe); this drops them, keeping the few protocol methods
that are the API (a StaticTape is called, a Dataset is indexed)."""
import griffe

KEEP = {"__call__", "__len__", "__getitem__", "__iter__"}


class DropDunders(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        seen = set()

        def walk(obj):
            if id(obj) in seen or obj.is_alias:
                return
            seen.add(id(obj))
            for name in list(obj.members):
                member = obj.members[name]
                if name.startswith("__") and name.endswith("__") and not (
                        name in KEEP and obj.is_class and obj.path != "cad._core._engine.Tensor"):
                    del obj.members[name]
                elif not member.is_alias:
                    walk(member)

        walk(pkg)
