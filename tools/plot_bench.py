#!/usr/bin/python3
"""Figures and tables of the KV-cache lab, made only from result JSON.

  plot_bench.py kv-modes RESULTS.json OUT_DIR   -> OUT_DIR/lab-kv-*.png
  plot_bench.py memory   RESULTS.json OUT_DIR   -> OUT_DIR/lab-memory-*.png
  plot_bench.py concurrency RESULTS.json OUT_DIR -> OUT_DIR/lab-concurrency.png
  plot_bench.py prefix RESULTS.json OUT_DIR -> OUT_DIR/lab-prefix.png
  plot_bench.py speed-table SPEED_DIR [IMG_DIR] -> the kvinfer vs llama.cpp table on
                         stdout (and IMG_DIR/perf-vs-llamacpp.png), from
                         scripts/speed.sh's bench/results/speed/*.json
  plot_bench.py tables   RESULTS_DIR            -> markdown tables on stdout
                         (RESULTS_DIR/kv-modes/results.json,
                          RESULTS_DIR/memory/results.json,
                          RESULTS_DIR/speed-*.json)

The JSON comes from `kvinfer bench kv-modes|memory|speed --json`; the
schemas are described in docs/kv-cache-lab.md. Uses Debian's matplotlib with
the Agg backend (no display needed).
"""

import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"none": "#d62728", "contiguous": "#1f77b4", "paged": "#2ca02c"}
STRATEGIES = ["none", "contiguous", "paged"]
MIB = 1024.0 * 1024.0
DPI = 100


def load(path):
    with open(path) as f:
        return json.load(f)


def subtitle(d):
    m = d["model"]
    mach = d["machine"]
    return (f"{m['file']} ({m['num_parameters'] / 1e6:.1f} M params, {m['n_layers']} layers, "
            f"KV {m['kv_bytes_per_token_f32']:,} B/token f32) · {d['threads']} threads · "
            f"{mach['nproc']}-core {mach['cpu_model']} · kvinfer {d['kvinfer_version']}")


def finish(fig, d, title, path):
    fig.suptitle(title, fontsize=13, fontweight="bold", y=0.995)
    fig.text(0.5, 0.935, subtitle(d), ha="center", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path}")


def runs_by(runs, strategy):
    return [r for r in runs if r["strategy"] == strategy]


# ------------------------------------------------------------------ none cost model

def none_step_samples(d):
    """(sequence length recomputed, ms) for every measured decode step of none."""
    xs, ys = [], []
    for sweep in ("gen_sweep", "prompt_sweep"):
        for r in runs_by(d[sweep]["runs"], "none"):
            steps = r.get("step_ms", [])
            for k in range(1, len(steps)):
                xs.append(r["prompt_tokens"] + k)
                ys.append(steps[k])
    return np.array(xs, float), np.array(ys, float)


def none_cost_fit(d):
    """Least-squares quadratic ms(n) of one none decode step over n tokens
    (a full recompute: linear work in the weights, quadratic in attention).
    None when there are too few samples."""
    xs, ys = none_step_samples(d)
    if len(xs) < 8 or len(set(xs.tolist())) < 3:
        return None
    coef = np.polyfit(xs, ys, 2)
    return np.poly1d(coef)


def none_estimate_total(d, fit, prompt, gen):
    """Estimated none total latency for `gen` generated tokens: the measured
    prefill of that prompt (TTFT of the cached runs) + sum of modelled steps."""
    cached = [r for r in d["gen_sweep"]["runs"]
              if r["strategy"] == "contiguous" and r["prompt_tokens"] == prompt]
    ttft = float(np.median([r["ttft_ms"] for r in cached])) if cached else 0.0
    n = np.arange(prompt + 1, prompt + gen, dtype=float)
    return ttft + float(np.sum(np.maximum(fit(n), 0.0)))


# ------------------------------------------------------------------ kv-modes

def plot_kv_modes(d, out):
    g = d["gen_sweep"]
    runs = g["runs"]
    fit = none_cost_fit(d)
    cap = d.get("none_max_gen_tokens")
    prompt = g["prompt_tokens"]
    lengths = sorted({r["gen_tokens"] for r in runs})

    # 1. Latency vs generated length, and the cost per generated token.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    for s in STRATEGIES:
        rs = sorted(runs_by(runs, s), key=lambda r: r["gen_tokens"])
        if not rs:
            continue
        x = [r["gen_tokens"] for r in rs]
        ax1.plot(x, [r["total_ms"] / 1000 for r in rs], "o-", color=COLORS[s], label=s, lw=2)
        ax2.plot(x, [r["decode_ms_per_token"] for r in rs], "o-", color=COLORS[s], label=s, lw=2)
    if fit is not None:
        measured = {r["gen_tokens"] for r in runs_by(runs, "none")}
        missing = [L for L in lengths if L not in measured]
        if missing:
            last = max(measured) if measured else lengths[0]
            xs = [last] + missing
            ys = [none_estimate_total(d, fit, prompt, L) / 1000 for L in xs]
            ax1.plot(xs, ys, "o--", color=COLORS["none"], mfc="white",
                     label=f"none, estimated (runs capped at {cap})")
            ys2 = [(none_estimate_total(d, fit, prompt, L) -
                    none_estimate_total(d, fit, prompt, 1)) / max(L - 1, 1) for L in xs]
            ax2.plot(xs, ys2, "o--", color=COLORS["none"], mfc="white", label="none, estimated")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("generated tokens (log scale)")
    ax1.set_ylabel("total latency of the request, s (log scale)")
    ax1.set_title(f"End-to-end latency ({prompt}-token prompt)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("generated tokens (log scale)")
    ax2.set_ylabel("mean decode time per token, ms (log scale)")
    ax2.set_title("Decode cost per token: O(n) recompute vs cached")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    finish(fig, d, "KV cache on/off: latency vs generated length", os.path.join(out, "lab-kv-latency.png"))

    # 2. Every decode step's time vs its position (the longest run of each strategy).
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    ylim_cached = 0.0
    for s in STRATEGIES:
        rs = runs_by(runs, s)
        if not rs:
            continue
        r = max(rs, key=lambda r: r["gen_tokens"])
        steps = np.array(r.get("step_ms", []), float)
        if len(steps) < 2:
            continue
        pos = r["prompt_tokens"] + np.arange(1, len(steps))
        ax = ax1 if s == "none" else ax2
        if s != "none":
            # Scale to the bulk of the steps: a few descheduled outliers
            # (shared machine) would otherwise flatten the trend.
            ylim_cached = max(ylim_cached, 1.6 * float(np.percentile(steps[1:], 99)))
        ax.plot(pos, steps[1:], ".", ms=2.5, color=COLORS[s], alpha=0.45)
        # A running median shows the trend through the scheduling noise.
        w = max(1, len(steps) // 32)
        med = [np.median(steps[1:][max(0, i - w):i + w + 1]) for i in range(len(steps) - 1)]
        ax.plot(pos, med, "-", color=COLORS[s], lw=2, label=f"{s} (running median)")
    if fit is not None:
        xs, _ = none_step_samples(d)
        n = np.linspace(min(xs), max(xs), 100)
        ax1.plot(n, fit(n), "k--", lw=1, label="quadratic fit (all none steps)")
    ax2.set_ylim(0, max(ylim_cached, 1e-3))
    ax1.set_title("none: every step recomputes the whole sequence")
    ax2.set_title("contiguous / paged: one new token per step")
    for ax in (ax1, ax2):
        ax.set_xlabel("sequence position of the decode step, tokens")
        ax.set_ylabel("Step() wall time, ms")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if ax is ax1:
            ax.set_ylim(bottom=0)
    finish(fig, d, "Per-step decode time vs position", os.path.join(out, "lab-kv-steps.png"))

    # 3. KV memory reserved vs used, by generated length.
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    bpt = d["model"]["kv_bytes_per_token_f32"]
    for s in ["contiguous", "paged"]:
        rs = sorted(runs_by(runs, s), key=lambda r: r["gen_tokens"])
        if not rs:
            continue
        x = [r["gen_tokens"] for r in rs]
        ax.plot(x, [r["kv"]["peak_bytes_reserved"] / MIB for r in rs], "o-", color=COLORS[s],
                lw=2, label=f"{s}: reserved")
        ax.plot(x, [r["kv"]["peak_bytes_used"] / MIB for r in rs], "s:", color=COLORS[s],
                lw=1.5, label=f"{s}: used (tokens held)")
    rs = sorted(runs_by(runs, "none"), key=lambda r: r["gen_tokens"])
    if rs:
        ax.plot([r["gen_tokens"] for r in rs], [0 for _ in rs], "o-", color=COLORS["none"],
                label="none: 0 kept between steps")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens (log scale)")
    ax.set_ylabel("peak KV bytes, MiB")
    ax.set_title(f"contiguous reserves max_seq_len = {g['max_seq_len']} tokens up front; "
                 f"paged grows by {d['block_size_tokens']}-token blocks\n"
                 f"({bpt:,} bytes per token; {prompt}-token prompt)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    finish(fig, d, "KV memory: reserved vs used", os.path.join(out, "lab-kv-memory.png"))

    # 4. Summary bars at the longest length every strategy ran (like the seed's).
    common = [L for L in lengths if all(any(r["gen_tokens"] == L for r in runs_by(runs, s))
                                        for s in STRATEGIES)]
    if common:
        L = max(common)
        at = {s: next(r for r in runs_by(runs, s) if r["gen_tokens"] == L) for s in STRATEGIES}
        fig, axes = plt.subplots(1, 4, figsize=(13, 4.2))
        panels = [
            ("total latency, s", lambda r: r["total_ms"] / 1000),
            ("decode time per token, ms", lambda r: r["decode_ms_per_token"]),
            ("KV reserved (peak), MiB", lambda r: r["kv"]["peak_bytes_reserved"] / MIB),
            ("resident growth during run, MiB", lambda r: r["rss"]["growth_bytes"] / MIB),
        ]
        for ax, (label, f) in zip(axes, panels):
            vals = [f(at[s]) for s in STRATEGIES]
            bars = ax.bar(STRATEGIES, vals, color=[COLORS[s] for s in STRATEGIES])
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=8)
            ax.set_title(label, fontsize=10)
            ax.set_ylabel(label)
            ax.margins(y=0.15)
            ax.grid(True, axis="y", alpha=0.3)
        finish(fig, d, f"Summary: {prompt}-token prompt + {L} generated tokens",
               os.path.join(out, "lab-kv-summary.png"))

    # 5. Prompt-length sweep: TTFT and the decode cost at long positions.
    p = d["prompt_sweep"]
    if p["runs"]:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
        for s in STRATEGIES:
            rs = sorted(runs_by(p["runs"], s), key=lambda r: r["prompt_tokens"])
            if not rs:
                continue
            x = [r["prompt_tokens"] for r in rs]
            ax1.plot(x, [r["ttft_ms"] for r in rs], "o-", color=COLORS[s], lw=2, label=s)
            ax2.plot(x, [r["decode_ms_per_token"] for r in rs], "o-", color=COLORS[s], lw=2, label=s)
        ax1.set_title("Time to first token (one batched prefill)")
        ax1.set_ylabel("TTFT, ms")
        ax2.set_title(f"Decode time per token ({p['gen_tokens']} generated)")
        ax2.set_ylabel("ms per generated token (log scale)")
        ax2.set_yscale("log")
        for ax in (ax1, ax2):
            ax.set_xlabel("prompt tokens")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        finish(fig, d, "Prompt-length sweep", os.path.join(out, "lab-kv-prompt.png"))


# ------------------------------------------------------------------ memory

def plot_memory(d, out):
    res = d["results"]
    names = [r["strategy"] for r in res]
    colors = [COLORS.get(n, "#888888") for n in names]
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.2))
    panels = [
        ("most sequences running at once", lambda r: r["max_running_sequences"], "{:.0f}"),
        ("throughput, generated tokens/s", lambda r: r["generated_tokens_per_s"], "{:.1f}"),
        ("mean KV waste, % of reserved", lambda r: 100 * r["mean_waste"], "{:.1f}%"),
        ("requests finished normally", lambda r: r["finish_reasons"].get("length", 0), "{:.0f}"),
    ]
    for ax, (label, f, fmt) in zip(axes, panels):
        vals = [f(r) for r in res]
        bars = ax.bar(names, vals, color=colors)
        for b, v in zip(bars, vals):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=9)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(label)
        ax.margins(y=0.15)
        ax.grid(True, axis="y", alpha=0.3)
    w = d["workload"]
    finish(fig, d, f"Same KV budget ({d['kv_budget_bytes'] / MIB:.1f} MiB), {w['requests']} mixed-length "
                   f"requests (max_seq_len {w['max_seq_len']})",
           os.path.join(out, "lab-memory-bars.png"))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    for r in res:
        t = r["timeline"]
        s = r["strategy"]
        x = np.array(t["t_ms"], float) / 1000
        ax1.plot(x, t["running"], "-", color=COLORS.get(s), lw=1.5, label=s)
        ax2.plot(x, np.array(t["bytes_reserved"], float) / MIB, "-", color=COLORS.get(s), lw=1.5,
                 label=f"{s}: reserved")
        ax2.plot(x, np.array(t["bytes_used"], float) / MIB, ":", color=COLORS.get(s), lw=1.5,
                 label=f"{s}: used")
    ax2.axhline(d["kv_budget_bytes"] / MIB, color="k", lw=1, ls="--", label="KV budget")
    ax1.set_ylabel("running sequences")
    ax1.set_title("Sequences running together")
    ax2.set_ylabel("KV bytes, MiB")
    ax2.set_title("KV reserved vs used over the run")
    for ax in (ax1, ax2):
        ax.set_xlabel("time since the first step, s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    finish(fig, d, "Mixed-length workload over time", os.path.join(out, "lab-memory-timeline.png"))


def plot_concurrency(d, out):
    lv = d["levels"]
    c = [l["concurrency"] for l in lv]
    tps = [l["decode_tokens_per_s"] for l in lv]
    step = [l["ms_per_decode_step"] for l in lv]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    ax1.plot(c, tps, "o-", color=COLORS.get(d["kv"], "#1f77b4"), lw=2, label="kvinfer batched decode")
    ax1.axhline(2.5 * tps[0], color="#999999", ls=":", label="2.5x one sequence (the goal at 16)")
    for x, y in zip(c, tps):
        ax1.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center",
                     fontsize=8)
    ax1.set_xscale("log", base=2)
    ax1.set_ylim(0, max(max(tps), 2.5 * tps[0]) * 1.2)
    ax1.set_xticks(c)
    ax1.set_xticklabels([str(x) for x in c])
    ax1.set_xlabel("concurrent sequences")
    ax1.set_ylabel("output tokens/s (decode phase)")
    ax1.set_title("Throughput")
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    ax2.plot(c, step, "s-", color="#444444", lw=2)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(c)
    ax2.set_xticklabels([str(x) for x in c])
    ax2.set_xlabel("concurrent sequences")
    ax2.set_ylabel("ms per decode step")
    ax2.set_title("Cost of one step (all sequences advance one token)")
    ax2.grid(True, alpha=0.3)
    finish(fig, d, f"Continuous batching: {d['prompt_tokens']} prompt + {d['gen_tokens']} generated "
                   f"tokens per sequence, KV {d['kv']}",
           os.path.join(out, "lab-concurrency.png"))


def plot_prefix(d, out):
    off, on = d["runs"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 4.4))
    colors = ["#999999", COLORS["paged"]]
    labels = ["prefix cache off", "prefix cache on"]
    for ax, key, title, unit in ((ax1, "ttft_ms_mean", "Mean TTFT (lower is better)", "ms"),
                                 (ax2, "total_tokens_per_s",
                                  "Throughput, prompt + generated (higher is better)", "tokens/s")):
        vals = [off[key], on[key]]
        bars = ax.bar(labels, vals, color=colors)
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=9)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(vals) * 1.18)
        ax.grid(True, axis="y", alpha=0.3)
    for r, color, label in ((off, colors[0], labels[0]), (on, colors[1], labels[1])):
        t = sorted(x["ttft_ms"] for x in r["requests"])
        ax3.plot(t, [(i + 1) / len(t) for i in range(len(t))], color=color, lw=2, label=label)
    ax3.set_xscale("log")
    ax3.set_xlabel("TTFT, ms (log)")
    ax3.set_ylabel("fraction of requests")
    ax3.set_title("TTFT distribution", fontsize=10)
    ax3.grid(True, alpha=0.3)
    ax3.legend(fontsize=8)
    finish(fig, d,
           f"Prefix caching: {d['requests']} requests sharing a {d['system_tokens']}-token prompt: "
           f"TTFT {d['ttft_mean_speedup']:.1f}x lower, throughput {d['throughput_speedup']:.1f}x",
           os.path.join(out, "lab-prefix.png"))
    conv = d.get("conversation")
    if not conv:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, color, label in (("off", colors[0], labels[0]), ("on", colors[1], labels[1])):
        turns = [t["turn"] for t in conv[key]]
        ax1.plot(turns, [t["prefill_tokens"] for t in conv[key]], "o-", color=color, lw=2,
                 label=label)
        ax2.plot(turns, [t["ttft_ms"] for t in conv[key]], "o-", color=color, lw=2, label=label)
    ax1.plot([t["turn"] for t in conv["off"]], [t["prompt_tokens"] for t in conv["off"]], ":",
             color="#444444", label="prompt tokens")
    ax1.set_ylabel("tokens prefilled")
    ax1.set_title("Prefill per turn", fontsize=10)
    ax2.set_ylabel("TTFT, ms")
    ax2.set_title("TTFT per turn", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("turn")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    finish(fig, d,
           f"A {conv['turns']}-turn conversation ({conv['system_tokens']}-token system prompt, "
           f"{conv['question_tokens']}-token questions, {conv['gen_tokens']}-token replies)",
           os.path.join(out, "lab-prefix-conversation.png"))


# ------------------------------------------------------------------ tables

def tables(results_dir):
    out = []
    speed = sorted(glob.glob(os.path.join(results_dir, "speed-*.json")))
    if speed:
        out.append("### bench speed\n")
        out.append("| kv | threads | prefill (pp) tok/s | decode (tg) tok/s | TTFT ms | ms/token |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for path in speed:
            s = load(path)
            out.append(f"| {s['kv']} | {s['threads']} | pp{s['prompt_tokens']}: "
                       f"{s['prefill_tokens_per_s']:.1f} ± {s['prefill_tokens_per_s_stddev']:.1f} | "
                       f"tg{s['gen_tokens']}: {s['decode_tokens_per_s']:.1f} ± "
                       f"{s['decode_tokens_per_s_stddev']:.1f} | {s['ttft_ms']:.1f} ± "
                       f"{s['ttft_ms_stddev']:.1f} | {s['time_per_output_token_ms']:.2f} ± "
                       f"{s['time_per_output_token_ms_stddev']:.2f} |")
        out.append("")
    km = os.path.join(results_dir, "kv-modes", "results.json")
    if os.path.exists(km):
        d = load(km)
        g = d["gen_sweep"]
        fit = none_cost_fit(d)
        out.append(f"### bench kv-modes: {g['prompt_tokens']}-token prompt, generated-length sweep\n")
        out.append("| generated | none total s | contiguous total s | paged total s | "
                   "speedup (none / contiguous) | none ms/token | contiguous ms/token | "
                   "paged ms/token |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for L in sorted({r["gen_tokens"] for r in g["runs"]}):
            row = {s: next((r for r in runs_by(g["runs"], s) if r["gen_tokens"] == L), None)
                   for s in STRATEGIES}
            c = row["contiguous"]
            if row["none"] is not None:
                none_s = row["none"]["total_ms"] / 1000
                none_txt = f"{none_s:.2f}"
                none_tok = f"{row['none']['decode_ms_per_token']:.2f}"
            elif fit is not None:
                none_s = none_estimate_total(d, fit, g["prompt_tokens"], L) / 1000
                none_txt = f"~{none_s:.0f} (estimated)"
                none_tok = "—"
            else:
                none_s, none_txt, none_tok = None, "—", "—"
            sp = f"{none_s / (c['total_ms'] / 1000):.1f}x" if none_s and c else "—"
            if row["none"] is None and none_s:
                sp = "~" + sp + " (est.)"
            cell = lambda r, k, f: (f.format(r[k] / 1000) if k == "total_ms" else f.format(r[k])) if r else "—"  # noqa: E731
            out.append(f"| {L} | {none_txt} | {cell(c, 'total_ms', '{:.2f}')} | "
                       f"{cell(row['paged'], 'total_ms', '{:.2f}')} | {sp} | {none_tok} | "
                       f"{cell(c, 'decode_ms_per_token', '{:.2f}')} | "
                       f"{cell(row['paged'], 'decode_ms_per_token', '{:.2f}')} |")
        out.append("")
        out.append("| generated | contiguous reserved MiB | paged reserved MiB | used MiB | "
                   "contiguous waste | paged waste |")
        out.append("|---:|---:|---:|---:|---:|---:|")
        for L in sorted({r["gen_tokens"] for r in g["runs"]}):
            c = next((r for r in runs_by(g["runs"], "contiguous") if r["gen_tokens"] == L), None)
            p = next((r for r in runs_by(g["runs"], "paged") if r["gen_tokens"] == L), None)
            if not c or not p:
                continue
            used = c["kv"]["peak_bytes_used"]
            cr, pr = c["kv"]["peak_bytes_reserved"], p["kv"]["peak_bytes_reserved"]
            out.append(f"| {L} | {cr / MIB:.2f} | {pr / MIB:.2f} | {used / MIB:.2f} | "
                       f"{100 * (cr - used) / cr:.1f}% | {100 * (pr - used) / pr:.1f}% |")
        out.append("")
        p = d["prompt_sweep"]
        if p["runs"]:
            out.append(f"### bench kv-modes: prompt-length sweep, {p['gen_tokens']} generated\n")
            out.append("| prompt | none TTFT ms | contiguous TTFT ms | paged TTFT ms | none ms/token | "
                       "contiguous ms/token | paged ms/token |")
            out.append("|---:|---:|---:|---:|---:|---:|---:|")
            for P in sorted({r["prompt_tokens"] for r in p["runs"]}):
                row = {s: next((r for r in runs_by(p["runs"], s) if r["prompt_tokens"] == P), None)
                       for s in STRATEGIES}
                f = lambda r, k: f"{r[k]:.1f}" if r else "—"  # noqa: E731
                out.append(f"| {P} | {f(row['none'], 'ttft_ms')} | {f(row['contiguous'], 'ttft_ms')} | "
                           f"{f(row['paged'], 'ttft_ms')} | {f(row['none'], 'decode_ms_per_token')} | "
                           f"{f(row['contiguous'], 'decode_ms_per_token')} | "
                           f"{f(row['paged'], 'decode_ms_per_token')} |")
            out.append("")
        if fit is not None:
            a2, a1, a0 = fit.coeffs
            out.append(f"none decode-step model (least squares over every measured none step): "
                       f"ms(n) = {a0:.3f} + {a1:.4f}·n + {a2:.3g}·n² for a recompute of n tokens.\n")
        if d.get("skipped"):
            out.append("Skipped runs: " + "; ".join(
                f"{s['strategy']} {s['prompt_tokens']}+{s['gen_tokens']} ({s['reason']})"
                for s in d["skipped"]) + "\n")
    mem = os.path.join(results_dir, "memory", "results.json")
    if os.path.exists(mem):
        d = load(mem)
        w = d["workload"]
        out.append(f"### bench memory: {w['requests']} requests, KV budget "
                   f"{d['kv_budget_bytes'] / MIB:.1f} MiB, max_seq_len {w['max_seq_len']}\n")
        out.append("| kv | most running at once | generated tok/s | mean waste | wall s | "
                   "finish reasons |")
        out.append("|---|---:|---:|---:|---:|---|")
        for r in d["results"]:
            fr = ", ".join(f"{k} {v}" for k, v in sorted(r["finish_reasons"].items()))
            out.append(f"| {r['strategy']} | {r['max_running_sequences']} | "
                       f"{r['generated_tokens_per_s']:.1f} | {100 * r['mean_waste']:.1f}% | "
                       f"{r['wall_s']:.1f} | {fr} |")
        out.append("")
    print("\n".join(out))

# llama.cpp's figures on this machine kind (build 4748, CPU backend, 2 threads,
# llama-bench pp512 / tg128 and llama-batched-bench 128 + 128 per sequence),
# as published with the comparison this table follows (the reference
# figures); the same model shape and weight types.
LLAMACPP = {"q4_1": (429, 173), "q4_0": (931, 225), "q8_0": (718, 147), "f16": (862, 120)}
LLAMACPP_BATCHED_Q4_1 = {1: 160, 4: 199, 16: 206, 32: 122}


def llama_bench_rates(speed_dir, name):
    """llama-bench's tokens/s from scripts/speed.sh's same-run measurement
    SPEED_DIR/llama.cpp/NAME.json, keyed by (n_prompt, n_gen, n_depth,
    type_k, flash_attn); {} when llama.cpp was not measured."""
    path = os.path.join(speed_dir, "llama.cpp", f"{name}.json")
    if not os.path.exists(path):
        return {}
    return {(r["n_prompt"], r["n_gen"], r.get("n_depth", 0), r.get("type_k", "f16"),
             str(r.get("flash_attn", ""))): (r["avg_ts"], r["stddev_ts"]) for r in load(path)}


def llama_rate(rates, n_prompt, n_gen, n_depth=0):
    """The best llama.cpp rate among the settings measured for one test (the
    flash-attention choices), or None."""
    vals = [v for k, v in rates.items() if k[:3] == (n_prompt, n_gen, n_depth)]
    return max(vals) if vals else None


def llama_cells(cells, width, same_run):
    """The `width` llama.cpp columns of a table row: `cells` (formatted
    strings), or dashes when llama.cpp ran but has no figure for the row
    (cells None); nothing when llama.cpp was not measured."""
    if cells is not None:
        return "".join(f" {c} |" for c in cells)
    return " — |" * width if same_run else ""


def speed_table(speed_dir, img_dir=None):
    same_run = os.path.isdir(os.path.join(speed_dir, "llama.cpp"))
    if same_run:
        out = ["llama.cpp measured on this machine in the same run (scripts/llama-cpp.sh: "
               "llama-bench, its defaults, 2 threads), with the published reference figures "
               "beside it.\n",
               "| weights | kvinfer pp512 tok/s | llama.cpp here | ratio | reference | "
               "kvinfer tg128 tok/s | llama.cpp here | ratio | reference |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    else:
        out = ["llama.cpp: the published reference figures (not measured in this run).\n",
               "| weights | kvinfer pp512 tok/s | llama.cpp | ratio | kvinfer tg128 tok/s | "
               "llama.cpp | ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    bars = []
    for t in ("q4_0", "q4_1", "q8_0", "f16"):
        pp_path = os.path.join(speed_dir, f"{t}-pp512.json")
        tg_path = os.path.join(speed_dir, f"{t}-tg128.json")
        if not (os.path.exists(pp_path) and os.path.exists(tg_path)):
            continue
        pp, tg = load(pp_path), load(tg_path)
        kp, kt = pp["prefill_tokens_per_s"], tg["decode_tokens_per_s"]
        cell_p = f"{kp:.0f} ± {pp['prefill_tokens_per_s_stddev']:.0f}"
        cell_t = f"{kt:.0f} ± {tg['decode_tokens_per_s_stddev']:.0f}"
        ip, it = LLAMACPP[t]
        if same_run:
            rates = llama_bench_rates(speed_dir, t)
            lp, lt = llama_rate(rates, 512, 0), llama_rate(rates, 0, 128)
            if lp is None or lt is None:
                continue
            bars.append((t, kp / lp[0], kt / lt[0]))
            out.append(f"| {t.upper()} | {cell_p} | {lp[0]:.0f} ± {lp[1]:.0f} | "
                       f"{kp / lp[0]:.2f}x | {ip} | {cell_t} | {lt[0]:.0f} ± {lt[1]:.0f} | "
                       f"{kt / lt[0]:.2f}x | {it} |")
        else:
            bars.append((t, kp / ip, kt / it))
            out.append(f"| {t.upper()} | {cell_p} | {ip} | {kp / ip:.2f}x | "
                       f"{cell_t} | {it} | {kt / it:.2f}x |")
    out.append("")
    extra = [("SmolLM2-135M-Instruct Q4_1 (the real model)", "real-q4_1"),
             ("Q4_1, f32 activations (exact path)", "q4_1-f32act"),
             ("GPT-2 124M shape, F16 (random weights)", "gpt2-124m-f16"),
             ("GPT-2 124M shape, F32 (random weights)", "gpt2-124m-f32")]
    rows = []
    for label, stem in extra:
        pp_path = os.path.join(speed_dir, f"{stem}-pp512.json")
        tg_path = os.path.join(speed_dir, f"{stem}-tg128.json")
        if os.path.exists(pp_path) and os.path.exists(tg_path):
            pp, tg = load(pp_path), load(tg_path)
            row = (f"| {label} | {pp['prefill_tokens_per_s']:.0f} ± "
                   f"{pp['prefill_tokens_per_s_stddev']:.0f} | {tg['decode_tokens_per_s']:.0f} ± "
                   f"{tg['decode_tokens_per_s_stddev']:.0f} |")
            rates = llama_bench_rates(speed_dir, stem)
            lp, lt = llama_rate(rates, 512, 0), llama_rate(rates, 0, 128)
            cells = [f"{lp[0]:.0f}", f"{lt[0]:.0f}"] if lp and lt else None
            rows.append(row + llama_cells(cells, 2, same_run))
    if rows:
        if same_run:
            out += ["| other runs | pp512 tok/s | tg128 tok/s | llama.cpp here pp512 | tg128 |",
                    "|---|---:|---:|---:|---:|"]
        else:
            out += ["| other runs | pp512 tok/s | tg128 tok/s |", "|---|---:|---:|"]
        out += rows + [""]
    depth_rows = []
    ctx_path = os.path.join(speed_dir, "context.json")
    ctx = load(ctx_path)["results"] if os.path.exists(ctx_path) else []
    for r in ctx:
        kvt = r["kv_dtype"]
        by_depth = {d["depth"]: d for d in r["depths"]}
        if 128 not in by_depth or 2048 not in by_depth:
            continue
        a = by_depth[128]["decode_tokens_per_s"]
        deep = by_depth[2048]
        b = deep["decode_tokens_per_s"]
        # The paired ratio (per repetition, then averaged) when 128 came first.
        ratio = (deep["ratio_to_first_depth"] if r["depths"][0]["depth"] == 128 else b / a)
        row = f"| {kvt} | {a:.0f} | {b:.0f} | {100 * ratio:.0f}% |"
        rates = llama_bench_rates(speed_dir, f"depth-kv{kvt}")
        la, lb = llama_rate(rates, 0, 64, 128), llama_rate(rates, 0, 64, 2048)
        cells = ([f"{la[0]:.0f}", f"{lb[0]:.0f}", f"{100 * lb[0] / la[0]:.0f}%",
                  f"{b / lb[0]:.2f}x"] if la and lb else None)
        depth_rows.append(row + llama_cells(cells, 4, same_run))
    if depth_rows:
        out.append("Decode against context, the default model (SmolLM2-135M-Instruct Q4_1), "
                   "tok/s over 64 tokens decoded after 128 or 2048 tokens of context "
                   "(kvinfer: `bench context`, depths and K/V types interleaved in each "
                   "repetition, the ratio paired per repetition)"
                   + (" (llama.cpp: llama-bench tg64 at that depth, the better of flash "
                      "attention off/on where both run):\n" if same_run else ":\n"))
        if same_run:
            out += ["| KV cache | kvinfer @128 | @2048 | 2048/128 | llama.cpp @128 | @2048 | "
                    "2048/128 | kvinfer/llama.cpp @2048 |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        else:
            out += ["| KV cache | @128 | @2048 | 2048/128 |", "|---|---:|---:|---:|"]
        out += depth_rows + [""]
    conc = os.path.join(speed_dir, "concurrency", "results.json")
    batched = []
    if os.path.exists(conc):
        c = load(conc)
        here = {}
        jl = os.path.join(speed_dir, "llama.cpp", "batched-q4_1.jsonl")
        if os.path.exists(jl):
            with open(jl) as f:
                here = {r["pl"]: r["speed_tg"] for r in map(json.loads, filter(str.strip, f))}
        out.append(f"Batched decode, Q4_1, {c['prompt_tokens']} prompt + {c['gen_tokens']} "
                   f"generated tokens per sequence ({c['kv']} KV; llama.cpp: "
                   f"llama-batched-bench's S_TG):\n")
        if here:
            out.append("| sequences | kvinfer decode tok/s | llama.cpp here | ratio | reference |")
            out.append("|---:|---:|---:|---:|---:|")
        else:
            out.append("| sequences | kvinfer decode tok/s | llama.cpp | ratio |")
            out.append("|---:|---:|---:|---:|")
        for lv in c["levels"]:
            n, k = lv["concurrency"], lv["decode_tokens_per_s"]
            pub = LLAMACPP_BATCHED_Q4_1.get(n)
            ref = here.get(n) if here else pub
            ratio = f"{k / ref:.2f}x" if ref else "—"
            if ref:
                batched.append((n, k / ref))
            if here:
                ref_cell = f"{ref:.0f}" if ref else "—"
                out.append(f"| {n} | {k:.0f} | {ref_cell} | {ratio} | {pub or '—'} |")
            else:
                out.append(f"| {n} | {k:.0f} | {ref or '—'} | {ratio} |")
        out.append("")
    reads = []
    read2 = []  # two-thread GB/s, before and after
    for when in ("before", "after"):
        path = os.path.join(speed_dir, f"memory-read-{when}.json")
        if os.path.exists(path):
            gbs = {b["name"].split("/")[1]: b["bytes_per_second"] / 1e9
                   for b in load(path)["benchmarks"]}
            read2.append(gbs.get("threads:2", 0))
            reads.append(f"{when} the runs {gbs.get('threads:1', 0):.1f} GB/s with 1 thread, "
                         f"{gbs.get('threads:2', 0):.1f} GB/s with 2")
    if reads:
        out.append("Memory read bandwidth (`kvinfer_bench --benchmark_filter=MemoryRead`): "
                   + "; ".join(reads) + ".\n")
    print("\n".join(out))
    if img_dir and bars:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        labels = [f"{t.upper()} pp512" for t, _, _ in bars] + [f"{t.upper()} tg128" for t, _, _ in bars]
        labels += [f"Q4_1 x{n} seqs" for n, _ in batched if n in (1, 4, 16, 32, 64)]
        batched = [(n, r) for n, r in batched if n in (1, 4, 16, 32, 64)]
        vals = [r for _, r, _ in bars] + [r for _, _, r in bars] + [r for _, r in batched]
        colors = ["#1f77b4"] * len(bars) + ["#2ca02c"] * len(bars) + ["#9467bd"] * len(batched)
        ax.bar(range(len(vals)), vals, color=colors)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
        ax.axhline(1.0, color="black", lw=1)
        ax.axhline(1.25, color="gray", ls="--", lw=1, label="goal 1.25x")
        ax.set_xticks(range(len(vals)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("kvinfer / llama.cpp (higher is better)")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        title = ("kvinfer vs llama.cpp measured in the same run" if same_run else
                 "kvinfer vs llama.cpp's published reference figures")
        title += ", SmolLM2-135M shape, 2 threads"
        if read2:
            # Decode is memory-bound: say what the machine could read then.
            title += (f"\n(memory read bandwidth during the run: "
                      f"{min(read2):.1f}–{max(read2):.1f} GB/s with 2 threads)")
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        path = os.path.join(img_dir, "perf-vs-llamacpp.png")
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        print(f"wrote {path}", file=sys.stderr)


def main(argv):
    if len(argv) in (3, 4) and argv[1] == "speed-table":
        speed_table(argv[2], argv[3] if len(argv) == 4 else None)
        return 0
    if len(argv) >= 2 and argv[1] == "tables" and len(argv) == 3:
        tables(argv[2])
        return 0
    if len(argv) != 4 or argv[1] not in ("kv-modes", "memory", "concurrency", "prefix"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, path, out = argv[1:]
    d = load(path)
    os.makedirs(out, exist_ok=True)
    if kind == "kv-modes":
        plot_kv_modes(d, out)
    elif kind == "concurrency":
        plot_concurrency(d, out)
    elif kind == "prefix":
        plot_prefix(d, out)
    else:
        plot_memory(d, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
