"""Runs cases of tests/hostile_cases.py by index (argv: data dir, then indices), one
line per event on stdout: "START <k>" before a case runs (so a crash names it), then
"DONE <k> <json>" with the outcome."""
import json
import sys
import warnings

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import hostile_cases as H  # noqa: E402

warnings.simplefilter("ignore")


def _snap(v):
    import cad
    if isinstance(v, cad.Tensor):
        return ("T", v.shape, str(v.dtype), v.requires_grad, np.array(v.detach().numpy(), copy=True))
    if isinstance(v, np.ndarray):
        return ("A", v.shape, str(v.dtype), None, v.copy())
    return None


def _same(a, b):
    return a[:4] == b[:4] and np.array_equal(a[4], b[4], equal_nan=a[4].dtype.kind == "f")


def main():
    data_dir = sys.argv[1]
    cases = H.cases(data_dir)
    for k in map(int, sys.argv[2:]):
        cid, code, _ = cases[k]
        print(f"START {k}", flush=True)
        ns = {}
        exec(H.SETUP, ns)
        before = {n: _snap(ns[n]) for n in H.INPUTS}
        err = None
        msg = ""
        try:
            exec(compile(code, cid, "exec"), ns)
        except BaseException as e:   # noqa: BLE001 (any exception is an outcome to check)
            err = type(e).__name__
            msg = str(e)[:300]
        changed = [n for n in H.INPUTS if not _same(before[n], _snap(ns[n]))]
        print("DONE %d %s" % (k, json.dumps({"err": err, "msg": msg, "changed": changed})), flush=True)
        import cad
        cad.set_num_threads(None)


if __name__ == "__main__":
    main()
