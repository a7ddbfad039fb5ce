"""Many streams at once, and a client leaving mid-stream."""
from __future__ import annotations

import asyncio

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="missing fixture: python3-aiohttp (scripts/setup.sh)")

import serverproc  # noqa: E402
from sse import stream_completion  # noqa: E402

TOPICS = ["rivers", "volcanoes", "owls", "bread", "trains", "jazz", "glaciers", "bees",
          "comets", "tea", "bridges", "coral"]
# A bound against a hang, generous for 2 busy cores; not a timing assertion.
HANG_GUARD_S = 240


def session(limit=0):
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=HANG_GUARD_S))


def kv_blocks_used(server):
    return serverproc.metric(server.metrics(), "kvinfer:kv_blocks_used")


def wait_idle(server, timeout=30.0):
    """Polls /metrics until nothing runs or waits and no KV block is held."""
    def idle():
        m = server.metrics()
        return (serverproc.metric(m, "kvinfer:num_requests_running") == 0
                and serverproc.metric(m, "kvinfer:num_requests_waiting") == 0
                and serverproc.metric(m, "kvinfer:kv_blocks_used") == 0) and m
    return serverproc.wait_for(idle, timeout)


def test_64_streams(server):
    n = 64
    bodies = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        if i % 2:
            bodies.append(("/v1/chat/completions", {
                "model": server.model_name, "max_tokens": 8 + i % 5, "temperature": 0.7,
                "seed": i, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"Tell me about {topic} ({i})."}]}))
        else:
            bodies.append(("/v1/completions", {
                "model": server.model_name, "max_tokens": 8 + i % 5, "temperature": 0,
                "stream_options": {"include_usage": True},
                "prompt": f"Here are {i} facts about {topic}:"}))

    async def run():
        async with session() as s:
            return await asyncio.wait_for(
                asyncio.gather(*(stream_completion(s, server.base_url, p, b) for p, b in bodies)),
                HANG_GUARD_S)

    results = asyncio.run(run())
    for (path, body), r in zip(bodies, results):
        assert r.status == 200, (path, r.status, r.error)
        assert r.error is None, r.error
        assert r.done, f"{path}: stream ended without [DONE]"
        assert r.finish_reason in ("stop", "length"), r.finish_reason
        assert r.usage is not None
        assert r.usage["completion_tokens"] <= body["max_tokens"]
        if r.finish_reason == "length":
            assert r.usage["completion_tokens"] == body["max_tokens"]
    m = wait_idle(server)
    assert m, f"KV blocks still held after all streams ended: {server.metrics()}"
    assert serverproc.metric(m, "kvinfer:kv_blocks_used") == 0
    assert serverproc.metric(m, "kvinfer:kv_blocks_free") == serverproc.metric(m, "kvinfer:kv_blocks_total")


def test_disconnect_mid_stream(server):
    """A client that leaves mid-stream: its request is aborted and its blocks
    freed while it would otherwise run for a long while; the others' greedy
    outputs are unaffected."""
    others = [{"model": server.model_name, "prompt": f"A short poem about {t}:", "max_tokens": 24,
               "temperature": 0, "ignore_eos": True} for t in TOPICS[:4]]
    victim = {"model": server.model_name, "prompt": "Write a very long essay about the sea.",
              "max_tokens": 4000, "temperature": 0, "ignore_eos": True}

    async def solo():
        async with session() as s:
            return [await stream_completion(s, server.base_url, "/v1/completions", b) for b in others]

    reference = asyncio.run(solo())
    assert all(r.done and r.error is None for r in reference)
    assert wait_idle(server)

    # 1. The victim alone: after it leaves, its blocks are freed long before
    #    its 4000 tokens could have been generated.
    aborts_before = serverproc.metric(server.metrics(), 'kvinfer:request_success_total{finished_reason="abort"}', 0)

    async def leave_early():
        async with session() as s:
            return await stream_completion(s, server.base_url, "/v1/completions", victim,
                                           stop_after_chunks=3)

    r = asyncio.run(leave_early())
    assert r.status == 200 and len(r.chunks) == 3 and not r.done
    m = wait_idle(server, timeout=15)
    assert m, ("the dropped stream's request still runs or holds KV blocks: "
               f"used={kv_blocks_used(server)}")
    aborts = serverproc.metric(m, 'kvinfer:request_success_total{finished_reason="abort"}', 0)
    assert aborts == aborts_before + 1

    # 2. The victim among others: they produce exactly their solo outputs.
    async def mixed():
        async with session() as s:
            tasks = [stream_completion(s, server.base_url, "/v1/completions", b) for b in others]
            tasks.insert(2, stream_completion(s, server.base_url, "/v1/completions", victim,
                                              stop_after_chunks=5))
            return await asyncio.wait_for(asyncio.gather(*tasks), HANG_GUARD_S)

    results = asyncio.run(mixed())
    dropped = results.pop(2)
    assert len(dropped.chunks) == 5 and not dropped.done
    for ref, got in zip(reference, results):
        assert got.error is None and got.done
        assert got.text == ref.text
    m = wait_idle(server, timeout=30)
    assert m, f"blocks still held: used={kv_blocks_used(server)}"
    assert serverproc.metric(m, 'kvinfer:request_success_total{finished_reason="abort"}', 0) == aborts + 1
