"""The benchmark as a picture: ``python -m bench --plot bench.png`` (after a run) or
``python -m bench --from results.json --plot bench.png`` (from a saved ``--json`` file).

One panel per workload; in it one group of horizontal bars per table row (a case, or
its forward/backward/total), one bar per implementation measured, on a log time axis.
Each peer's bar is labelled with cad's ratio to it (cad/X: below 1x cad is faster),
cad's own bar with its time.  Needs matplotlib (``pip install matplotlib``).
"""
import math

from .harness import IMPLS, format_ratio, format_time

# one colour per implementation, cad's two columns the strongest
COLOURS = {"hand": "#9e9e9e", "torch": "#ee4c2c", "torch.jit": "#f4a582",
           "torch.compile": "#b2182b", "jax": "#4285f4", "jax.jit": "#92c5de",
           "autograd": "#7b3294", "cad.eager": "#66bd63", "cad": "#1a9850"}


def _panels(rows):
    """[(workload, [rows])] in the order of the run"""
    out = []
    for r in rows:
        if not r.get("medians_s"):
            continue
        if not out or out[-1][0] != r["workload"]:
            out.append((r["workload"], []))
        out[-1][1].append(r)
    return out


def plot(result, path):
    """Draw result (the dict ``python -m bench`` writes as JSON) into path (png, svg,
    pdf: matplotlib picks by the suffix).  Returns path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(result.get("rows", []))
    if not panels:
        raise ValueError("no measured rows to plot")
    heights = []
    for _, rows in panels:
        bars = sum(len(r["medians_s"]) for r in rows)
        heights.append(0.22 * bars + 0.25 * len(rows) + 0.6)
    top_in = 0.8   # the title and the legend above the panels
    total_in = sum(heights) + top_in
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, total_in),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    used = set()
    for ax, (workload, rows) in zip(axes[:, 0], panels):
        ticks, labels = [], []
        y = 0.0
        lo, hi = math.inf, 0.0
        for r in rows:
            impls = [i for i in IMPLS if i in r["medians_s"]]
            top = y
            for impl in impls:
                t = r["medians_s"][impl]
                lo, hi = min(lo, t), max(hi, t)
                ax.barh(y, t, height=0.8, color=COLOURS.get(impl, "#444444"),
                        label=impl if impl not in used else None)
                used.add(impl)
                if impl == "cad":
                    value, unit = format_time(t)
                    text = f"cad {value} {unit}"
                else:
                    ratio = r.get("ratios", {}).get(f"cad/{impl}")
                    text = f"cad/{impl} {format_ratio(ratio)}" if ratio else impl
                ax.text(t * 1.08, y, text, va="center", fontsize=7)
                y += 1
            ticks.append((top + y - 1) / 2)
            label = r["label"].split(" ", 1)[1] if " " in r["label"] else r["label"]
            labels.append(f"{label}\n(per {r['per']})" if r.get("per") not in (None, "call")
                          else label)
            y += 0.6
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 10)   # room for the labels right of the longest bar
        ax.set_title(workload, loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.set_xlabel("median seconds (log scale)", fontsize=8)
    machine = result.get("machine", {})
    cpu = machine.get("cpu_model") or machine.get("info", {}).get("cpu", {}).get("model", "")
    title = "cad against its peers" + (f" on {cpu}" if cpu else "")
    sub = f"{'quick' if result.get('quick') else 'full'} run, {result.get('date', '')}"
    fig.suptitle(f"{title}\n{sub}; cad/X below 1x: cad is faster", fontsize=10,
                 y=1 - 0.05 / total_in, va="top")
    handles, names = [], []
    for ax in axes[:, 0]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    order = sorted(range(len(names)), key=lambda i: IMPLS.index(names[i]) if names[i] in IMPLS else 99)
    fig.legend([handles[i] for i in order], [names[i] for i in order], loc="center",
               bbox_to_anchor=(0.5, 1 - 0.62 / total_in), fontsize=8, ncol=len(names),
               frameon=False)
    fig.tight_layout()
    fig.subplots_adjust(top=1 - (top_in + 0.3) / total_in)   # tight_layout ignores the legend
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
