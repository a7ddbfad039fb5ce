"""/health, /v1/models, /tokenize, /detokenize, /metrics and the chat page's
route, over plain HTTP."""
from __future__ import annotations

import json
import re

import serverproc

GAUGES = ["kvinfer:kv_cache_usage_perc", "kvinfer:num_requests_running",
          "kvinfer:num_requests_waiting", "kvinfer:kv_blocks_used", "kvinfer:kv_blocks_free",
          "kvinfer:kv_blocks_total", "kvinfer:kv_blocks_shared", "kvinfer:kv_bytes_reserved",
          "kvinfer:kv_bytes_used"]
COUNTERS = ["kvinfer:num_preemptions_total", "kvinfer:prompt_tokens_total",
            "kvinfer:generation_tokens_total", "kvinfer:kv_cow_copies_total",
            "kvinfer:num_recomputed_tokens_total"]
HISTOGRAMS = ["kvinfer:time_to_first_token_seconds", "kvinfer:time_per_output_token_seconds",
              "kvinfer:e2e_request_latency_seconds"]


def test_health(server):
    status, _, _ = serverproc.request(server.base_url, "GET", "/health")
    assert status == 200


def test_models_shape(server):
    status, hdrs, raw = serverproc.request(server.base_url, "GET", "/v1/models")
    assert status == 200
    assert hdrs.get_content_type() == "application/json"
    body = json.loads(raw)
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    m = body["data"][0]
    assert m["object"] == "model"
    assert m["id"] == serverproc.MODEL.name
    assert isinstance(m["created"], int)
    assert isinstance(m["owned_by"], str)


def test_tokenize_detokenize_round_trip(server):
    text = "Hello, world! Ünïcödé and emoji \U0001F600."
    status, _, body, raw = server.post("/tokenize", {"prompt": text})
    assert status == 200, raw
    assert isinstance(body["tokens"], list) and all(isinstance(t, int) for t in body["tokens"])
    assert body["count"] == len(body["tokens"]) > 0
    assert isinstance(body["max_model_len"], int) and body["max_model_len"] > body["count"]
    status, _, back, raw = server.post("/detokenize", {"tokens": body["tokens"]})
    assert status == 200, raw
    assert back["prompt"].lstrip() == text or back["prompt"].endswith(text)


def test_tokenize_counts_what_completions_bill(server):
    prompt = "Counting tokens is easy"
    _, _, tok, _ = server.post("/tokenize", {"prompt": prompt})
    status, _, body, raw = server.post("/v1/completions", {"model": server.model_name,
                                                           "prompt": prompt, "max_tokens": 1})
    assert status == 200, raw
    assert body["usage"]["prompt_tokens"] == tok["count"]


def test_tokenize_bad_input(server):
    for body in ({}, {"prompt": 5}, {"tokens": "abc"}):
        status, _, parsed, raw = server.post("/tokenize", body)
        assert status == 400, raw
        assert set(parsed["error"]) >= {"message", "type", "param", "code"}
    status, _, parsed, raw = server.post("/detokenize", {"tokens": [-5]})
    assert status == 400, raw
    status, _, parsed, raw = server.post("/detokenize", {"tokens": "x"})
    assert status == 400, raw


def test_metrics_names_and_types(server):
    # One request first, so the histograms have a sample.
    status, _, body, raw = server.post("/v1/completions", {"model": server.model_name,
                                                           "prompt": "Metrics", "max_tokens": 3})
    assert status == 200, raw
    status, hdrs, raw = serverproc.request(server.base_url, "GET", "/metrics")
    assert status == 200
    assert hdrs.get_content_type() == "text/plain"
    text = raw.decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name in GAUGES:
        assert types.get(name) == "gauge", name
    for name in COUNTERS:
        # Prometheus' text format names a counter's family without _total or with it.
        assert types.get(name) == "counter" or types.get(name.removesuffix("_total")) == "counter", name
    for name in HISTOGRAMS:
        assert types.get(name) == "histogram", name
        assert re.search(rf'^{re.escape(name)}_bucket\{{le="\+Inf"\}} \d', text, re.M), name
        assert re.search(rf"^{re.escape(name)}_sum ", text, re.M), name
        assert re.search(rf"^{re.escape(name)}_count ", text, re.M), name
    m = serverproc.metrics(server.base_url)
    for reason in ("stop", "length", "abort", "error"):
        assert f'kvinfer:request_success_total{{finished_reason="{reason}"}}' in m, reason
    assert 0.0 <= m["kvinfer:kv_cache_usage_perc"] <= 1.0
    assert m["kvinfer:kv_blocks_used"] + m["kvinfer:kv_blocks_free"] == m["kvinfer:kv_blocks_total"]
    assert m["kvinfer:prompt_tokens_total"] > 0
    assert m["kvinfer:generation_tokens_total"] >= 3
    assert m["kvinfer:e2e_request_latency_seconds_count"] >= 1
    # Histogram buckets are cumulative.
    for name in HISTOGRAMS:
        buckets = [(float(le.replace("+Inf", "inf")), v) for le, v in re.findall(
            rf'^{re.escape(name)}_bucket\{{le="([^"]+)"\}} (\S+)$', text, re.M)]
        counts = [float(v) for _, v in sorted(buckets)]
        assert counts == sorted(counts), name
        assert counts[-1] == m[f"{name}_count"]


def test_metrics_count_tokens(server):
    before = server.metrics()
    status, _, body, raw = server.post("/v1/completions", {"model": server.model_name,
                                                           "prompt": "One two three",
                                                           "max_tokens": 5, "ignore_eos": True})
    assert status == 200, raw
    after = server.metrics()
    # Other tests do not run concurrently with this one (pytest runs serially).
    assert after["kvinfer:generation_tokens_total"] - before["kvinfer:generation_tokens_total"] == 5
    assert (after["kvinfer:prompt_tokens_total"] - before["kvinfer:prompt_tokens_total"]
            == body["usage"]["prompt_tokens"])
    key = 'kvinfer:request_success_total{finished_reason="length"}'
    assert after[key] - before[key] == 1


def test_chat_page_route(server):
    status, hdrs, raw = serverproc.request(server.base_url, "GET", "/")
    assert status == 200
    assert hdrs.get_content_type() == "text/html"
    page = raw.decode()
    assert "<html" in page.lower() and "/v1/chat/completions" in page
    # The page is web/chat.html, byte for byte (embedded at build time).
    assert raw == (serverproc.REPO / "web" / "chat.html").read_bytes()
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""(fetch|import)\s*\(\s*["'`](https?:)?//""", page)


def test_listen_backlog_takes_a_burst(server):
    """The listening socket's backlog holds a burst of connections (64 clients
    connecting at once): with a backlog of 5 (cpp-httplib's default in
    Debian's 0.11) the kernel overflows the accept queue
    (TcpExtListenOverflows) and some clients get ECONNRESET."""
    import shutil
    import subprocess
    from urllib.parse import urlsplit
    import pytest
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed")
    port = urlsplit(server.base_url).port
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    # State Recv-Q Send-Q Local Peer: on a listening socket Send-Q is the backlog.
    assert out and out[0] == "LISTEN", out
    assert int(out[2]) >= 64, f"listen backlog {out[2]}"
