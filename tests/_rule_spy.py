"""A pytest plugin (``-p _rule_spy``) that counts every record of a table op (custom
primitives aside) reaching a Python rule from a sweep: transforms._jvp_record and
_rev_record (the sweeps' rule callbacks) and the _VJP/_JVP lists (reverse_sweep_r's
rules).  At the end it writes {"op/kind/nb": count} to $CAD_RULE_SPY_OUT.
test_product_sweeps runs the composition suite under it: every op of the table goes
through the sweeps without its Python rule (issue 14)."""
import collections
import json
import os

CALLS = collections.Counter()


def _count(kind, op, nb):
    import cad.transforms as T
    p = T._PRIMS[op]
    if p.kind != "custom":
        CALLS[f"{p.name}/{kind}/{nb}"] += 1


def pytest_configure(config):
    import cad.transforms as T
    T._tables()
    jr, rr = T._jvp_record, T._rev_record

    def jvp_record(tape, rec, ts, nb, fused):
        _count("jvp", rec[0], nb)
        return jr(tape, rec, ts, nb, fused)

    def rev_record(tape, rec, g, nb, dep):
        _count("vjp", rec[0], nb)
        return rr(tape, rec, g, nb, dep)
    T._jvp_record, T._rev_record = jvp_record, rev_record
    for table, kind in ((T._VJP, "vjp"), (T._JVP, "jvp")):
        for code, f in enumerate(list(table)):
            if f is not None:
                table[code] = (lambda *a, f=f, code=code, kind=kind: _count(kind, code, a[0].nb) or f(*a))


def pytest_unconfigure(config):
    out = os.environ.get("CAD_RULE_SPY_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump(dict(CALLS), fh)
