"""Misuse that the types catch (tests/test_stubs.py: mypy --strict must report exactly
the lines marked ``# E: <error code>``): the op table's signatures are in cad/__init__.pyi."""
import cad
import cad.scipy.special as sc

x = cad.ones(3)
cad.sin(x, 2)  # E: call-arg
cad.sum(x, axiz=0)  # E: call-arg
x.reshape(3, 1).sum(keepdim=True, axes=0)  # E: call-arg
cad.grad(cad.sum, argnums="x")  # E: arg-type
n: int = cad.linalg.det(x)  # E: assignment
sc.erff(x)  # E: attr-defined
