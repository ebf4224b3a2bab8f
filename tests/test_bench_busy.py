"""The busy-neighbour tools of bench/ (issue 14): `python -m bench --busy N` and
`python -m bench.busy` start N processes that really spin (multiprocessing's spawn
could not find a target defined in bench/__main__.py, so the children died at once
and the mode measured an idle machine), and the per-cell A/B of thread counts runs;
W1's tape-size cells measure bytes per op."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[11])   # utime


def test_busy_processes_spin():
    from bench.__main__ import start_busy, stop_busy
    procs = start_busy(2)
    try:
        time.sleep(0.5)
        assert all(p.poll() is None for p in procs), "a spinning process exited"
        if os.path.exists(f"/proc/{procs[0].pid}/stat"):
            assert all(_cpu_ticks(p.pid) > 0 for p in procs), "the processes did not run"
    finally:
        stop_busy(procs)
    assert all(p.poll() is not None for p in procs)


def test_busy_ab_runs(tmp_path):
    out = tmp_path / "busy.json"
    p = subprocess.run([sys.executable, "-m", "bench.busy", "--only", "W2", "--trials", "2",
                        "--budget", "0.1", "--busy", "1", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["threads"] == [1, 2] and r["busy"] == 1
    labels = [row["label"] for row in r["rows"]]
    assert "W2 seed, scalar / cad" in labels and "W2 seed, tensor / cad" in labels
    for row in r["rows"]:
        assert len(row["ratios"]) == 2 and all(x > 0 for x in row["ratios"])
        assert min(row["samples"]) >= 3
    assert "1 spinning processes" in p.stdout and "only" not in p.stdout.splitlines()[-1]


def test_busy_null_comparison_keeps_two_slots():
    # `--threads 1,1` (the same setting in both slots) measures the floor; keyed by the
    # thread count, the two slots were one list and every ratio read exactly 1
    import bench.busy as B

    class FakeCad:
        n = 1

        def set_num_threads(self, k):
            self.n = k

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001 * (1 + len(calls) % 3))
    got = B.ab_cell(fn, FakeCad(), [1, 1], 0.05, sample_s=0.001)
    assert isinstance(got, tuple) and len(got) == 2
    assert len(got[0]) >= 3 and len(got[1]) >= 3
    assert abs(len(got[0]) - len(got[1])) <= 1
    assert got[0] != got[1]


def test_w1_tape_bytes_per_op():
    from bench.w_scalar import tape_bytes_per_op, _w1_sized
    per_op, nrecs, nbufs = tape_bytes_per_op(300)
    assert nrecs == 300 and nbufs >= 300
    assert 32 < per_op < 2000
    case = _w1_sized(1000)
    assert case.data() == {"n": 1000}
    assert "bytes per op" in case.note
