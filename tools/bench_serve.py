#!/usr/bin/python3
"""A load generator for OpenAI-compatible servers (kvinfer serve, llama.cpp's
llama-server, vLLM, ...): N concurrent clients replay a prompt set with
streaming and it reports what vLLM's serving benchmark reports: request
throughput, output tokens/s, time to first token (TTFT), time per output
token (TPOT) and inter-token latency (ITL), mean / median / p99, as a table,
JSON and a plot. Needs only aiohttp (python3-aiohttp); matplotlib for --plot-out.

  tools/bench_serve.py --base-url http://127.0.0.1:8080 --concurrency 1,4,16,64 \\
      --num-prompts 64 --max-tokens 128 --json-out kvinfer.json --plot-out bench.png
  # several runs (servers) in one plot, from their JSON:
  tools/bench_serve.py --plot-from kvinfer.json llama.json --plot-out serve-bench.png

Per request: TTFT is the time from sending it to the first streamed content
token; ITL the gaps between later content chunks; TPOT (latency - TTFT) /
(output tokens - 1); output tokens are the server's usage.completion_tokens
(stream_options.include_usage) or, where a server sends none, the count of
content chunks. Each concurrency level runs --num-prompts requests with at most
that many in flight (a closed loop: a client sends its next request when the
last one ends), after one warm-up request.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

try:
    import aiohttp
except ImportError:  # pragma: no cover
    sys.exit("bench_serve.py needs aiohttp (Debian: python3-aiohttp)")

# A built-in prompt set: instructions of varied length, expanded by --seed.
SUBJECTS = ["the water cycle", "how a bicycle works", "the history of tea", "black holes",
            "photosynthesis", "the Roman roads", "how vaccines work", "coral reefs",
            "the printing press", "volcanoes", "the stock market", "honey bees",
            "the internet's routing", "glaciers", "the violin", "compilers", "the Moon landing",
            "desert plants", "sourdough bread", "lighthouses"]
TASKS = ["Explain {s} to a ten-year-old.",
         "Write a short essay about {s}.",
         "Give me five interesting facts about {s}, with a sentence on each.",
         "Write a poem about {s}.",
         "Summarize what an encyclopedia would say about {s}, in two paragraphs.",
         "I am preparing a lecture on {s}. Outline the main points I should cover, then "
         "suggest an opening anecdote and three questions to ask the audience.",
         "Describe {s} as if you were a tour guide, step by step."]


def builtin_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(TASKS).format(s=rng.choice(SUBJECTS)) for _ in range(n)]


def load_prompts(path: str) -> list[str]:
    prompts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                obj = json.loads(line)
                prompts.append(obj.get("prompt") or obj["messages"][-1]["content"])
            else:
                prompts.append(line)
    if not prompts:
        sys.exit(f"{path}: no prompts")
    return prompts


@dataclass
class RequestResult:
    ok: bool = False
    error: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)


async def one_request(session, url, payload, chat: bool, headers) -> RequestResult:
    res = RequestResult()
    chunks = 0
    usage = None
    t0 = time.perf_counter()
    last = t0
    try:
        async with session.post(url, json=payload, headers=headers) as resp:
            if resp.status != 200:
                res.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return res
            buf = b""
            done = False
            async for piece in resp.content:
                buf += piece
                if not buf.endswith(b"\n"):
                    continue
                line = buf.strip()
                buf = b""
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True  # read on to the end of the body, so the connection is reusable
                    continue
                obj = json.loads(data)
                if "error" in obj:
                    res.error = json.dumps(obj["error"])[:200]
                    return res
                if obj.get("usage"):
                    usage = obj["usage"]
                for c in obj.get("choices") or []:
                    text = (c.get("delta") or {}).get("content") if chat else c.get("text")
                    if text:
                        now = time.perf_counter()
                        if chunks == 0:
                            res.ttft = now - t0
                        else:
                            res.itl.append(now - last)
                        last = now
                        chunks += 1
            res.latency = time.perf_counter() - t0
            if not done:
                res.error = "the stream ended without [DONE]"
                return res
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    res.output_tokens = int(usage["completion_tokens"]) if usage else chunks
    res.prompt_tokens = int(usage["prompt_tokens"]) if usage else 0
    res.ok = chunks > 0
    if not res.ok:
        res.error = "no content streamed"
    return res


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(xs: list[float]) -> dict:
    if not xs:
        return {"mean": float("nan"), "median": float("nan"), "p99": float("nan")}
    return {"mean": statistics.fmean(xs), "median": statistics.median(xs), "p99": percentile(xs, 99)}


async def run_level(args, prompts, model, concurrency) -> dict:
    chat = args.endpoint == "chat"
    url = args.base_url.rstrip("/") + ("/v1/chat/completions" if chat else "/v1/completions")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    def payload(prompt):
        p = {"model": model, "max_tokens": args.max_tokens, "temperature": args.temperature,
             "stream": True, "stream_options": {"include_usage": True}}
        if args.ignore_eos:
            p["ignore_eos"] = True
        if chat:
            p["messages"] = [{"role": "user", "content": prompt}]
        else:
            p["prompt"] = prompt
        return p

    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    # A connection per request, as vLLM's benchmark does: no keep-alive reuse races.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        warm = await one_request(session, url, {**payload(prompts[0]), "max_tokens": 4}, chat, headers)
        if not warm.ok:
            raise SystemExit(f"warm-up request to {url} failed: {warm.error}")
        queue = list(range(args.num_prompts))
        results: list[RequestResult] = []

        async def client():
            while queue:
                i = queue.pop(0)
                results.append(await one_request(session, url, payload(prompts[i % len(prompts)]),
                                                 chat, headers))

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(min(concurrency, args.num_prompts))))
        duration = time.perf_counter() - t0

    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    itls = [x for r in ok for x in r.itl]
    ms = lambda d: {k: v * 1000.0 for k, v in d.items()}  # noqa: E731
    return {
        "concurrency": concurrency,
        "num_requests": len(results),
        "completed": len(ok),
        "failed": len(failed),
        "errors": sorted({r.error for r in failed})[:5],
        "duration_s": duration,
        "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens,
        "request_throughput": len(ok) / duration,
        "output_throughput": out_tokens / duration,
        "total_token_throughput": (in_tokens + out_tokens) / duration,
        "ttft_ms": ms(summarize([r.ttft for r in ok])),
        "tpot_ms": ms(summarize(tpots)),
        "itl_ms": ms(summarize(itls)),
        "e2e_ms": ms(summarize([r.latency for r in ok])),
    }


def print_table(label: str, levels: list[dict]) -> None:
    cols = [("conc", "{concurrency}"), ("ok", "{completed}"), ("fail", "{failed}"),
            ("req/s", "{request_throughput:.2f}"), ("out tok/s", "{output_throughput:.1f}"),
            ("TTFT mean", "{ttft_ms[mean]:.0f}"), ("TTFT p50", "{ttft_ms[median]:.0f}"),
            ("TTFT p99", "{ttft_ms[p99]:.0f}"), ("TPOT mean", "{tpot_ms[mean]:.1f}"),
            ("TPOT p50", "{tpot_ms[median]:.1f}"), ("TPOT p99", "{tpot_ms[p99]:.1f}"),
            ("ITL mean", "{itl_ms[mean]:.1f}"), ("ITL p50", "{itl_ms[median]:.1f}"),
            ("ITL p99", "{itl_ms[p99]:.1f}")]
    rows = [[fmt.format(**lv) for _, fmt in cols] for lv in levels]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, (h, _) in enumerate(cols)]
    print(f"\n{label}  (times in ms)")
    print("  ".join(h.rjust(w) for (h, _), w in zip(cols, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    for lv in levels:
        for e in lv["errors"]:
            print(f"  concurrency {lv['concurrency']}: {e}")


def plot(runs: list[dict], out: str, title: str | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for run in runs:
        xs = [lv["concurrency"] for lv in run["levels"]]
        label = run["label"]
        axes[0].plot(xs, [lv["output_throughput"] for lv in run["levels"]], "o-", label=label)
        line, = axes[1].plot(xs, [lv["ttft_ms"]["median"] for lv in run["levels"]], "o-",
                             label=f"{label} p50")
        axes[1].plot(xs, [lv["ttft_ms"]["p99"] for lv in run["levels"]], "s--",
                     color=line.get_color(), label=f"{label} p99")
        axes[2].plot(xs, [lv["tpot_ms"]["median"] for lv in run["levels"]], "o-", label=label)
    for ax, ylabel, heading in (
            (axes[0], "output tokens/s", "Output throughput (higher is better)"),
            (axes[1], "ms", "Time to first token (lower is better)"),
            (axes[2], "ms", "Time per output token, median (lower is better)")):
        ax.set_xscale("log", base=2)
        xs = sorted({lv["concurrency"] for run in runs for lv in run["levels"]})
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(ylabel)
        ax.set_title(heading, fontsize=11)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


async def fetch_model(args) -> str:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(args.base_url.rstrip("/") + "/v1/models", headers=headers) as r:
            body = await r.json(content_type=None)
            return body["data"][0]["id"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--model", help="model name (default: the first of /v1/models)")
    ap.add_argument("--label", help="this run's name in the table and plot (default: the model)")
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--concurrency", default="1,4,16,64",
                    help="comma-separated concurrency levels (default 1,4,16,64)")
    ap.add_argument("--num-prompts", type=int, default=0,
                    help="requests per level (default: max(16, 2 x the level))")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                    help="let requests end at end-of-generation (default: every request "
                         "generates --max-tokens, sent as the vLLM/llama.cpp ignore_eos extension)")
    ap.add_argument("--prompts-file", help="prompts, one per line (text or JSON with \"prompt\")")
    ap.add_argument("--seed", type=int, default=0, help="seed of the built-in prompt set")
    ap.add_argument("--api-key")
    ap.add_argument("--request-timeout", type=float, default=600)
    ap.add_argument("--json-out", help="write the results here")
    ap.add_argument("--plot-out", help="write a PNG plot here (needs matplotlib)")
    ap.add_argument("--plot-from", nargs="+", metavar="JSON",
                    help="plot (and tabulate) earlier --json-out files instead of running")
    ap.add_argument("--title", help="the plot's title")
    args = ap.parse_args()

    if args.plot_from:
        runs = [json.load(open(p)) for p in args.plot_from]
        for run in runs:
            print_table(run["label"], run["levels"])
        if args.plot_out:
            plot(runs, args.plot_out, args.title)
        return
    if not args.base_url:
        ap.error("--base-url is required (or --plot-from)")
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    model = args.model or asyncio.run(fetch_model(args))
    label = args.label or model
    results = []
    for c in levels:
        n = args.num_prompts or max(16, 2 * c)
        prompts = load_prompts(args.prompts_file) if args.prompts_file else builtin_prompts(n, args.seed)
        a = argparse.Namespace(**{**vars(args), "num_prompts": n})
        print(f"{label}: concurrency {c}, {n} requests of {args.max_tokens} tokens ...",
              file=sys.stderr, flush=True)
        results.append(asyncio.run(run_level(a, prompts, model, c)))
    print_table(label, results)
    run = {"label": label, "model": model, "base_url": args.base_url, "endpoint": args.endpoint,
           "max_tokens": args.max_tokens, "temperature": args.temperature,
           "ignore_eos": args.ignore_eos, "seed": args.seed, "host": platform.node(),
           "levels": results}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(run, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json_out}")
    if args.plot_out:
        plot([run], args.plot_out, args.title)
    if any(lv["failed"] for lv in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
