"""Bad input gets an OpenAI-shaped error with the right status, never a
crash: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

import asyncio
import json

import pytest

import serverproc


def check_error(status, body, raw, want_status, code=None):
    assert status == want_status, f"want {want_status}, got {status}: {raw[:300]!r}"
    assert isinstance(body, dict), f"error body is not JSON: {raw[:300]!r}"
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] is None or isinstance(err["code"], (str, int)), err
    if code is not None:
        assert err["code"] == code, err
    return err


def chat_body(server, **kw):
    body = {"model": server.model_name, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2}
    body.update(kw)
    return body


def test_malformed_json(server):
    for raw in (b"{", b"not json", b'{"model": "x",}', b"", b"[1, 2]", b"null"):
        status, hdrs, body_raw = serverproc.request(server.base_url, "POST", "/v1/chat/completions",
                                                    raw, {"Content-Type": "application/json"})
        body = json.loads(body_raw) if body_raw.startswith(b"{") else None
        check_error(status, body, body_raw, 400)


def test_completions_malformed_json(server):
    status, _, raw = serverproc.request(server.base_url, "POST", "/v1/completions", b'{"prompt": ',
                                        {"Content-Type": "application/json"})
    check_error(status, json.loads(raw), raw, 400)


@pytest.mark.parametrize("field,value", [
    ("messages", "hello"),
    ("messages", [{"role": "user"}]),
    ("messages", [{"role": "wizard", "content": "hi"}]),
    ("messages", [{"role": "user", "content": 42}]),
    ("messages", []),
    ("max_tokens", "ten"),
    ("max_tokens", 1.5),
    ("temperature", "hot"),
    ("stream", "yes"),
    ("stop", 5),
    ("n", "two"),
    ("seed", "abc"),
    ("logprobs", "yes"),
    ("stream_options", "usage"),
])
def test_wrong_types(server, field, value):
    status, _, body, raw = server.post("/v1/chat/completions", chat_body(server, **{field: value}))
    err = check_error(status, body, raw, 400)
    if err["param"] is not None:
        assert field in err["param"], err


@pytest.mark.parametrize("field,value", [
    ("max_tokens", -1),
    ("max_completion_tokens", -5),
    ("temperature", -0.5),
    ("temperature", 1000),
    ("top_p", 1.5),
    ("top_p", -0.1),
    ("n", 0),
    ("n", 100000),
    ("presence_penalty", 3.0),
    ("frequency_penalty", -3.0),
    ("top_logprobs", 50),
    ("top_k", -2),
    ("min_p", 2.0),
    ("repetition_penalty", -1.0),
])
def test_out_of_range(server, field, value):
    body = chat_body(server, **{field: value})
    if field == "top_logprobs":
        body["logprobs"] = True
    status, _, parsed, raw = server.post("/v1/chat/completions", body)
    err = check_error(status, parsed, raw, 400)
    if err["param"] is not None:
        assert field in err["param"], err


@pytest.mark.parametrize("field,value", [
    ("prompt", 5),
    ("prompt", [[1, "a"]]),
    ("prompt", [-1, 2]),
    ("prompt", [999999999]),
    ("logprobs", 100),
    ("echo", "yes"),
    ("max_tokens", -1),
])
def test_completions_bad_values(server, field, value):
    body = {"model": server.model_name, "prompt": "Hi", "max_tokens": 2, field: value}
    status, _, parsed, raw = server.post("/v1/completions", body)
    check_error(status, parsed, raw, 400)


def test_missing_required(server):
    status, _, body, raw = server.post("/v1/chat/completions", {"model": server.model_name})
    check_error(status, body, raw, 400)
    status, _, body, raw = server.post("/v1/completions", {"model": server.model_name})
    check_error(status, body, raw, 400)


def test_unknown_model(server):
    for path, extra in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                        ("/v1/completions", {"prompt": "x"})):
        status, _, body, raw = server.post(path, {"model": "no-such-model", "max_tokens": 2, **extra})
        err = check_error(status, body, raw, 404)
        assert "no-such-model" in err["message"]


def test_prompt_over_context(server):
    status, _, tok, raw = server.post("/tokenize", {"prompt": "hello"})
    assert status == 200, raw
    max_len = tok["max_model_len"]
    prompt = " hello" * (max_len + 16)
    for path, extra in (("/v1/completions", {"prompt": prompt}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]})):
        status, _, body, raw = server.post(path, {"model": server.model_name, "max_tokens": 4, **extra})
        check_error(status, body, raw, 400, code="context_length_exceeded")


def test_prompt_token_ids_over_context(server):
    status, _, tok, raw = server.post("/tokenize", {"prompt": " hello"})
    ids = tok["tokens"][-1:] * (tok["max_model_len"] + 1)
    status, _, body, raw = server.post("/v1/completions", {"model": server.model_name,
                                                           "prompt": ids, "max_tokens": 1})
    check_error(status, body, raw, 400, code="context_length_exceeded")


def test_run_past_context_ends_with_length_or_error(server):
    """A prompt just under the context with a budget past it: either a clear
    400 or an answer cut at the context with finish_reason "length", never
    text produced after silently dropping context."""
    status, _, tok, raw = server.post("/tokenize", {"prompt": " hello"})
    max_len = tok["max_model_len"]
    word = tok["tokens"][-1:]
    n_prompt = max_len - 3
    status, _, body, raw = server.post("/v1/completions", {
        "model": server.model_name, "prompt": word * n_prompt, "max_tokens": 32,
        "temperature": 0, "ignore_eos": True}, timeout=600)
    if status == 400:
        check_error(status, body, raw, 400)
        return
    assert status == 200, raw
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == n_prompt
    assert body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] <= max_len


def raw_http(base_url, head: bytes, body: bytes, timeout=60.0):
    """Sends a request over a bare socket: the head, then the body unless the
    server has already answered (a server may refuse a body by its
    Content-Length alone); returns (status, body bytes)."""
    import select
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(base_url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(head)
        ready, _, _ = select.select([s], [], [], 2.0)
        if not ready:
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                headers = data[:head_end].decode("latin-1").lower()
                for line in headers.split("\r\n"):
                    if line.startswith("content-length:"):
                        if len(data) - head_end - 4 >= int(line.split(":")[1]):
                            break
                else:
                    continue
                break
    assert data, "no response at all"
    status = int(data.split(b" ", 2)[1])
    return status, data[data.find(b"\r\n\r\n") + 4:]


def test_body_too_large(server):
    body = b'{"model": "x", "prompt": "' + b"a" * (9 << 20) + b'"}'
    port = server.base_url.rsplit(":", 1)[1]
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    status, raw = raw_http(server.base_url, head, body)
    check_error(status, json.loads(raw), raw, 413)
    # and it still serves
    status, _, _ = serverproc.request(server.base_url, "GET", "/health")
    assert status == 200


def test_unknown_route_and_method(server):
    status, _, raw = serverproc.request(server.base_url, "GET", "/v1/no-such-endpoint")
    assert status == 404
    status, _, raw = serverproc.request(server.base_url, "GET", "/v1/chat/completions")
    assert status in (404, 405)


def test_api_key_and_served_model_name():
    key = "sk-test-0123456789"
    args = ["--api-key", key, "--max-seqs", "2", "--served-model-name", "my-model", "--kv-memory-mib", "64"]
    with serverproc.ServerProcess(args, name="server-api-key") as srv:
        body = {"model": "ignored", "prompt": "Hi", "max_tokens": 1}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key},
                        {"Authorization": "Basic " + key}):
            status, _, parsed, raw = serverproc.post_json(srv.base_url, "/v1/completions", body,
                                                          headers)
            check_error(status, parsed, raw, 401)
            status, _, raw = serverproc.request(srv.base_url, "GET", "/v1/models", headers=headers)
            check_error(status, json.loads(raw), raw, 401)
        auth = {"Authorization": f"Bearer {key}"}
        status, _, raw = serverproc.request(srv.base_url, "GET", "/v1/models", headers=auth)
        assert status == 200, raw
        model = json.loads(raw)["data"][0]["id"]
        assert model == "my-model"
        status, _, parsed, raw = serverproc.post_json(srv.base_url, "/v1/completions",
                                                      {**body, "model": model}, auth)
        assert status == 200, raw
        assert parsed["model"] == "my-model"
        # The file's name is not the model's name any more.
        status, _, parsed, raw = serverproc.post_json(
            srv.base_url, "/v1/completions", {**body, "model": serverproc.MODEL.name}, auth)
        check_error(status, parsed, raw, 404)
        # The official client with the key.
        import openai
        c = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=key, max_retries=0)
        assert c.completions.create(model=model, prompt="Hi", max_tokens=1).choices
        bad = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model=model, prompt="Hi", max_tokens=1)
        # /health stays open for load balancers.
        status, _, _ = serverproc.request(srv.base_url, "GET", "/health")
        assert status == 200


def test_queue_full_gets_429():
    """One running, one waiting at most: a burst of long requests gets 429s
    with Retry-After; the admitted ones complete."""
    aiohttp = pytest.importorskip("aiohttp")
    args = ["--max-seqs", "1", "--max-waiting", "1", "--kv-memory-mib", "64"]
    with serverproc.ServerProcess(args, name="server-queue") as srv:
        status, _, raw = serverproc.request(srv.base_url, "GET", "/v1/models")
        model = json.loads(raw)["data"][0]["id"]

        async def one(session):
            async with session.post(srv.base_url + "/v1/completions", json={
                    "model": model, "prompt": "Count to one hundred:", "max_tokens": 48,
                    "ignore_eos": True, "temperature": 0}) as resp:
                return resp.status, dict(resp.headers), await resp.read()

        async def burst():
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
                return await asyncio.gather(*(one(s) for _ in range(8)))

        results = asyncio.run(burst())
        rejected = [r for r in results if r[0] == 429]
        ok = [r for r in results if r[0] == 200]
        assert len(ok) + len(rejected) == len(results), [r[0] for r in results]
        assert rejected, "no request was refused with a queue of one"
        assert ok, "no request was admitted"
        for status, headers, raw in rejected:
            check_error(status, json.loads(raw), raw, 429)
            retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
            assert retry is not None and retry.strip().isdigit(), headers
        for _, _, raw in ok:
            assert json.loads(raw)["usage"]["completion_tokens"] == 48
        status, _, _ = serverproc.request(srv.base_url, "GET", "/health")
        assert status == 200
