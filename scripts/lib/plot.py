"""One PNG of line charts next to a benchmark's markdown table (the scripts/bench-* scripts).

    sys.path.insert(0, "scripts/lib")  # from the repository root, as every bench script runs
    from plot import chart
    chart("runs/x/plot.png", [panel, ...], title="...")

A panel is one subplot (left to right), plain data so that it can cross a process boundary:
    {"xlabel": "sites", "ylabel": "peak RSS (MB)",
     "series": [{"label": "coordinator", "x": [1, 2, 4], "y": [700, 720, 790], "style": "o-"}],
     "logx": 2,                         # optional: log axis of that base (also "logy")
     "xticks": [1, 2, 4],               # optional: tick at each x, labelled as the number
     "hlines": [[2.65, "sync DP"]],     # optional: dashed grey lines [y, label]; "vlines": thin grey [x, label]
     "title": "...", "legend": True}    # optional
A series' "style" is a matplotlib format string ("o-", "s--", "."); "label" and "color" ("C0", ...)
may be omitted.

Matplotlib is Debian's python3-matplotlib (scripts/bootstrap). An interpreter without it (the
torch venv that bench-inner and bench-scale run in) hands the chart as JSON to /usr/bin/python3;
where neither has it, "(matplotlib missing: no plot)" is printed and the benchmark goes on.
As a command: `/usr/bin/python3 scripts/lib/plot.py < chart.json` ({"path", "panels", "title"}).
"""
import json
import os
import subprocess
import sys

DEBIAN_PYTHON = "/usr/bin/python3"


def _draw(path, panels, title, panel_size):
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    w, h = panel_size
    fig, axes = plt.subplots(1, len(panels), figsize=(w * len(panels), h), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for s in p.get("series", []):
            ax.plot(s["x"], s["y"], s.get("style", "-"), label=s.get("label"), color=s.get("color"))
        for y, label in p.get("hlines", []):
            ax.axhline(y, color="grey", lw=0.8, ls="--", label=label)
        for x, label in p.get("vlines", []):
            ax.axvline(x, color="grey", lw=0.5, label=label)
        if p.get("logx"):
            ax.set_xscale("log", base=p["logx"])
        if p.get("logy"):
            ax.set_yscale("log", base=p["logy"])
        if p.get("xticks"):
            ax.set_xticks(p["xticks"])
            ax.set_xticklabels([f"{t:g}" for t in p["xticks"]])
        ax.set_xlabel(p.get("xlabel", ""))
        ax.set_ylabel(p.get("ylabel", ""))
        if p.get("title"):
            ax.set_title(p["title"], fontsize=10)
        if p.get("legend", True) and ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart(path, panels, title=None, panel_size=(7, 4)):
    """Writes the PNG at path and prints "plot: path"; returns path, or None when no plot was made."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) == os.path.realpath(DEBIAN_PYTHON) or not os.path.exists(DEBIAN_PYTHON):
            print("\n(matplotlib missing: no plot)")
            return None
        spec = json.dumps({"path": os.path.abspath(path), "panels": panels, "title": title,
                           "panel_size": list(panel_size)})
        r = subprocess.run([DEBIAN_PYTHON, os.path.abspath(__file__)], input=spec, text=True,
                           capture_output=True, timeout=300)
        print(r.stdout.rstrip("\n") or "\n(matplotlib missing: no plot)")
        return path if r.returncode == 0 and os.path.exists(path) else None
    _draw(path, panels, title, panel_size)
    print(f"\nplot: {path}")
    return path


if __name__ == "__main__":
    s = json.load(sys.stdin)
    sys.exit(0 if chart(s["path"], s["panels"], s.get("title"), tuple(s.get("panel_size", (7, 4)))) else 1)
