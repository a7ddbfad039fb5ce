"""Requests needing about twice the KV pool at once: all complete with their
full greedy output (what each produces alone), preemptions and the tokens
they forced to recompute are counted in /metrics, and the server is healthy
and holds no block when it goes idle."""
from __future__ import annotations

import asyncio
import json
import math

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="missing fixture: python3-aiohttp (scripts/setup.sh)")

import serverproc  # noqa: E402
from sse import stream_completion  # noqa: E402

BLOCK = 16
GEN = 40
TOPICS = ["a lighthouse", "a desert", "a small robot", "the moon", "a city at night", "a forest",
          "an old clock", "a mountain", "a ship", "a garden", "a library", "a storm"]


def test_requests_needing_twice_the_pool():
    args = ["--kv", "paged", "--block-size", str(BLOCK), "--kv-memory-mib", "8", "--max-seqs", "16"]
    with serverproc.ServerProcess(args, name="server-oversubscribed") as srv:
        m = serverproc.metrics(srv.base_url)
        total_blocks = int(serverproc.metric(m, "kvinfer:kv_blocks_total"))
        assert total_blocks > 0
        model = json.loads(serverproc.request(srv.base_url, "GET", "/v1/models")[2])["data"][0]["id"]

        def blocks_needed(prompt):
            status, _, tok, raw = serverproc.post_json(srv.base_url, "/tokenize", {"prompt": prompt})
            assert status == 200, raw
            return math.ceil((tok["count"] + GEN) / BLOCK)

        # Enough requests to need about twice the pool, each fitting alone.
        bodies, blocks = [], 0
        while blocks < 2 * total_blocks:
            i = len(bodies)
            prompt = f"Once upon a time, near {TOPICS[i % len(TOPICS)]} ({i}),"
            need = blocks_needed(prompt)
            assert need * 2 <= total_blocks, (
                f"the pool ({total_blocks} blocks) is too small for one request ({need} blocks)")
            blocks += need
            bodies.append({"model": model, "prompt": prompt, "max_tokens": GEN, "temperature": 0,
                           "ignore_eos": True})
        count = len(bodies)

        def session():
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=300))

        async def solo():
            async with session() as s:
                return [await stream_completion(s, srv.base_url, "/v1/completions",
                                                {**b, "stream_options": {"include_usage": True}})
                        for b in bodies]

        async def together():
            async with session() as s:
                return await asyncio.gather(*(stream_completion(
                    s, srv.base_url, "/v1/completions",
                    {**b, "stream_options": {"include_usage": True}}) for b in bodies))

        reference = asyncio.run(solo())
        for r in reference:
            assert r.status == 200 and r.done and r.error is None, (r.status, r.error)
            assert r.usage["completion_tokens"] == GEN
        before = serverproc.metrics(srv.base_url)
        assert serverproc.metric(before, "kvinfer:num_preemptions_total") == 0

        results = asyncio.run(together())
        for ref, got in zip(reference, results):
            assert got.status == 200, got.error
            assert got.error is None and got.done
            assert got.finish_reason == "length"
            assert got.usage["completion_tokens"] == GEN, "a truncated answer"
            assert got.text == ref.text

        after = serverproc.metrics(srv.base_url)
        preemptions = serverproc.metric(after, "kvinfer:num_preemptions_total")
        recomputed = serverproc.metric(after, "kvinfer:num_recomputed_tokens_total")
        assert preemptions > 0, f"{count} requests needing {blocks} of {total_blocks} blocks: no preemption"
        assert recomputed > 0
        assert serverproc.metric(after, 'kvinfer:request_success_total{finished_reason="length"}') >= 2 * count

        def idle():
            m = serverproc.metrics(srv.base_url)
            return (serverproc.metric(m, "kvinfer:kv_blocks_used") == 0
                    and serverproc.metric(m, "kvinfer:num_requests_running") == 0
                    and serverproc.metric(m, "kvinfer:num_requests_waiting") == 0)
        assert serverproc.wait_for(idle, 30), serverproc.metrics(srv.base_url)
        assert serverproc.request(srv.base_url, "GET", "/health")[0] == 200
        assert srv.alive()
    assert srv.proc.returncode == 0, srv.log_text()[-2000:]
