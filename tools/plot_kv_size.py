#!/usr/bin/python3
"""Plot KV-cache memory against sequence length, one line per model.

Usage: plot_kv_size.py DATA.json OUT.png

DATA.json is what `kvinfer kv-size --plot` writes:
  {"dtype": "f16", "batch": 1, "block_size": 1, "seq_len": 4096,
   "models": [{"name", "attention", "context_length", "sliding_window",
               "seq_len": [...], "total_bytes": [...]}]}

Exit status: 0 on success, 2 for bad arguments or data, 3 when matplotlib
is not installed (the CLI turns that into an install hint).
"""
import json
import sys


def main(argv):
    if len(argv) != 3:
        print("usage: plot_kv_size.py DATA.json OUT.png", file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError as e:
        print(f"plot_kv_size.py: matplotlib is not available: {e}", file=sys.stderr)
        return 3

    try:
        with open(argv[1], encoding="utf-8") as f:
            data = json.load(f)
        models = data["models"]
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_kv_size.py: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2

    def bytes_label(v, _pos=None):
        for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if v >= scale:
                x = v / scale
                return f"{x:g} {unit}" if x >= 1 else f"{x:.2g} {unit}"
        return f"{v:g} B"

    def tokens_label(v, _pos=None):
        if v >= 1024 and v % 1024 == 0:
            return f"{int(v) // 1024}K"
        return f"{v:g}"

    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=100)
    # Models with equal bytes/token draw on top of each other; distinct dash
    # patterns keep each one visible.
    styles = ["-", "--", "-.", ":"]
    for idx, m in enumerate(models):
        xs, ys = m["seq_len"], m["total_bytes"]
        if not xs:
            continue
        label = f'{m["name"]} ({m["attention"]}'
        if m.get("sliding_window"):
            label += f', window {m["sliding_window"]}'
        label += ")"
        (line,) = ax.plot(xs, ys, label=label, linewidth=1.8,
                          linestyle=styles[(idx // 10 + idx) % len(styles)])
        # Mark the trained context at the end of each line.
        ax.plot([xs[-1]], [ys[-1]], "o", color=line.get_color(), markersize=4)
        w = m.get("sliding_window") or 0
        if w and w < xs[-1]:
            # The plateau: memory stops growing once the window is full.
            i = xs.index(w) if w in xs else None
            if i is not None:
                ax.annotate("window full", xy=(w, ys[i]), xytext=(6, -14),
                            textcoords="offset points", fontsize=8,
                            color=line.get_color())

    seq_len = data.get("seq_len")
    if seq_len:
        ax.axvline(seq_len, color="0.6", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=24))
    ax.yaxis.set_major_locator(LogLocator(base=2, numticks=40))
    ax.xaxis.set_major_formatter(FuncFormatter(tokens_label))
    ax.yaxis.set_major_formatter(FuncFormatter(bytes_label))
    # Thin out dense tick labels: keep every other power of two on x.
    for i, lbl in enumerate(ax.get_xticklabels()):
        lbl.set_visible(i % 2 == 0)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("KV cache size")
    batch = data.get("batch", 1)
    block = data.get("block_size", 1)
    title = f'KV cache memory vs sequence length ({data.get("dtype", "?")}, batch {batch}'
    title += f", block {block})" if block and block > 1 else ")"
    ax.set_title(title)
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    fig.tight_layout()
    try:
        fig.savefig(argv[2])
    except OSError as e:
        print(f"plot_kv_size.py: cannot write {argv[2]}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
