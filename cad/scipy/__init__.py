"""cad.scipy: scipy's functions with exact derivatives, under scipy's names and
signatures (``import cad.scipy.special as sc`` where code said
``import scipy.special as sc``).  Submodules: special, stats, signal, linalg,
integrate (imported on first use)."""
import importlib
from typing import TYPE_CHECKING

__all__ = ["integrate", "linalg", "signal", "special", "stats"]

if TYPE_CHECKING:   # what a type checker sees (a misspelt name stays an error there)
    from . import integrate, linalg, signal, special, stats  # noqa: F401
else:
    def __getattr__(name):
        if name in __all__:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'cad.scipy' has no attribute {name!r}")
