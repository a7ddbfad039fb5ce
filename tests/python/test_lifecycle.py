"""SIGTERM: the server stops accepting, lets running requests finish for
--drain-seconds, aborts the rest, and exits 0."""
from __future__ import annotations

import json
import signal
import threading
import urllib.request

import serverproc


def stream_lines(base_url, body, on_first_chunk):
    """Reads a streaming completion; calls on_first_chunk() after the first
    data line; returns the decoded events (None for [DONE])."""
    req = urllib.request.Request(base_url + "/v1/completions", method="POST",
                                 data=json.dumps({**body, "stream": True}).encode(),
                                 headers={"Content-Type": "application/json"})
    events = []
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            events.append(None if data == "[DONE]" else json.loads(data))
            if len(events) == 1:
                on_first_chunk()
    return events


def finish_reasons(events):
    return [c.get("finish_reason") for e in events if e for c in e.get("choices", [])
            if c.get("finish_reason")]


def run_with_sigterm(drain_args, max_tokens):
    with serverproc.ServerProcess(["--max-seqs", "4", "--kv-memory-mib", "64", *drain_args], name="server-drain") as srv:
        model = json.loads(serverproc.request(srv.base_url, "GET", "/v1/models")[2])["data"][0]["id"]
        body = {"model": model, "prompt": "Count slowly:", "max_tokens": max_tokens,
                "temperature": 0, "ignore_eos": True}
        after_signal = {}

        def sigterm():
            srv.proc.send_signal(signal.SIGTERM)

            def probe():  # a new request during the drain: refused (503) or not accepted at all
                try:
                    status, _, _, _ = serverproc.post_json(srv.base_url, "/v1/completions",
                                                           {**body, "stream": False}, timeout=30)
                    after_signal["status"] = status
                except OSError as e:
                    after_signal["status"] = type(e).__name__
            t = threading.Thread(target=probe)
            t.start()
            after_signal["thread"] = t

        events = stream_lines(srv.base_url, body, sigterm)
        after_signal["thread"].join(60)
        rc = srv.proc.wait(60)
    return events, after_signal.get("status"), rc


def test_sigterm_drains_running_requests():
    events, status, rc = run_with_sigterm(["--drain-seconds", "60"], 24)
    assert events[-1] is None, "the running stream did not end with [DONE]"
    assert finish_reasons(events) == ["length"], "a drained request must run to its end"
    text = "".join(c.get("text", "") for e in events if e for c in e["choices"])
    assert text
    assert status != 200, "a request sent after SIGTERM was accepted"
    assert rc == 0


def test_sigterm_without_drain_aborts():
    events, status, rc = run_with_sigterm(["--drain-seconds", "0"], 1000)
    assert events[-1] is None, "the aborted stream did not end with [DONE]"
    assert finish_reasons(events) == ["abort"]
    assert rc == 0
