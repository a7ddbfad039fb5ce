"""The official OpenAI client drives /v1/chat/completions and /v1/completions,
streamed and not; shapes, usage, stop, n and logprobs checked field by field."""
from __future__ import annotations

import math

import pytest

PROMPT = "The three primary colors are"
CHAT = [{"role": "user", "content": "Name three fruits."}]


def check_usage(usage, prompt_tokens=None, completion_tokens=None):
    assert usage is not None
    assert isinstance(usage.prompt_tokens, int) and usage.prompt_tokens > 0
    assert isinstance(usage.completion_tokens, int) and usage.completion_tokens >= 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    details = usage.prompt_tokens_details
    assert details is not None, "usage.prompt_tokens_details must always be present"
    assert isinstance(details.cached_tokens, int)
    assert 0 <= details.cached_tokens <= usage.prompt_tokens
    if prompt_tokens is not None:
        assert usage.prompt_tokens == prompt_tokens
    if completion_tokens is not None:
        assert usage.completion_tokens == completion_tokens


def count_tokens(server, text):
    status, _, body, raw = server.post("/tokenize", {"prompt": text})
    assert status == 200, raw
    return body["count"]


def test_models(client, server):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [server.model_name]
    assert models.data[0].object == "model"


def test_chat_completion(client, server):
    r = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=12,
                                       temperature=0)
    assert r.object == "chat.completion"
    assert r.id and isinstance(r.created, int)
    assert r.model == server.model_name
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content
    assert c.finish_reason in ("stop", "length")
    check_usage(r.usage)
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == 12
    assert r.usage.completion_tokens <= 12


def test_chat_stream_matches_non_stream(client, server):
    whole = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=12,
                                           temperature=0)
    stream = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=12,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks, "no chunks"
    ids = {ch.id for ch in chunks}
    assert len(ids) == 1, f"chunk ids differ: {ids}"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    content_chunks = [ch for ch in chunks if ch.choices]
    assert content_chunks[0].choices[0].delta.role == "assistant"
    finishes = [ch.choices[0].finish_reason for ch in content_chunks]
    assert all(f is None for f in finishes[:-1])
    assert finishes[-1] == whole.choices[0].finish_reason
    text = "".join(ch.choices[0].delta.content or "" for ch in content_chunks)
    assert text == whole.choices[0].message.content
    # include_usage: a last chunk with empty choices and the usage; none before it.
    assert chunks[-1].choices == []
    check_usage(chunks[-1].usage, whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert all(ch.usage is None for ch in chunks[:-1])


def test_chat_stream_without_usage(client, server):
    chunks = list(client.chat.completions.create(model=server.model_name, messages=CHAT,
                                                 max_tokens=4, temperature=0, stream=True))
    assert all(ch.usage is None for ch in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_completion(client, server):
    r = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=10,
                                  temperature=0)
    assert r.object == "text_completion"
    assert r.model == server.model_name
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0 and isinstance(c.text, str)
    assert c.finish_reason in ("stop", "length")
    check_usage(r.usage, prompt_tokens=count_tokens(server, PROMPT))


def test_completion_stream_matches_non_stream(client, server):
    whole = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=10,
                                      temperature=0)
    chunks = list(client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=10,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    body = [ch for ch in chunks if ch.choices]
    assert all(ch.object == "text_completion" for ch in chunks)
    assert "".join(ch.choices[0].text for ch in body) == whole.choices[0].text
    assert body[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == []
    check_usage(chunks[-1].usage, whole.usage.prompt_tokens, whole.usage.completion_tokens)


def test_completion_prompt_forms(client, server):
    """A string, a list of strings (one choice each) and token ids."""
    one = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=6,
                                    temperature=0)
    status, _, tok, _ = server.post("/tokenize", {"prompt": PROMPT})
    assert status == 200
    by_ids = client.completions.create(model=server.model_name, prompt=tok["tokens"],
                                       max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == one.choices[0].text
    assert by_ids.usage.prompt_tokens == one.usage.prompt_tokens
    two = client.completions.create(model=server.model_name, prompt=[PROMPT, "Once upon a time"],
                                    max_tokens=6, temperature=0)
    assert sorted(c.index for c in two.choices) == [0, 1]
    first = next(c for c in two.choices if c.index == 0)
    assert first.text == one.choices[0].text


def test_completion_echo(client, server):
    r = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=5,
                                  temperature=0, echo=True)
    plain = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=5,
                                      temperature=0)
    assert r.choices[0].text == PROMPT + plain.choices[0].text


def test_stop_strings(client, server):
    base = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=24,
                                     temperature=0, extra_body={"ignore_eos": True})
    text = base.choices[0].text
    assert len(text) > 8, f"too short to pick a stop string from: {text!r}"
    # A stop string from the middle of the greedy continuation: the answer is
    # everything before its first occurrence, the stop string excluded.
    stop = text[len(text) // 2: len(text) // 2 + 3]
    expected = text[: text.find(stop)]
    r = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=24,
                                  temperature=0, stop=stop, extra_body={"ignore_eos": True})
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "stop"
    # A list: the earliest match wins; a stop string never seen changes nothing.
    r2 = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=24,
                                   temperature=0, stop=["\u2603never\u2603", stop],
                                   extra_body={"ignore_eos": True})
    assert r2.choices[0].text == expected
    assert r2.choices[0].finish_reason == "stop"
    # Streamed: the same text, the stop string never leaks into a delta.
    chunks = list(client.completions.create(model=server.model_name, prompt=PROMPT,
                                            max_tokens=24, temperature=0, stop=stop, stream=True,
                                            extra_body={"ignore_eos": True}))
    body = [ch for ch in chunks if ch.choices]
    assert "".join(ch.choices[0].text for ch in body) == expected
    assert body[-1].choices[0].finish_reason == "stop"


def test_chat_stop_string(client, server):
    base = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=20,
                                          temperature=0, extra_body={"ignore_eos": True})
    text = base.choices[0].message.content
    assert len(text) > 6, text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    r = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=20,
                                       temperature=0, stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].message.content == text[: text.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_n_greater_than_one(client, server):
    r = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=8, n=3,
                                       temperature=1.0, seed=7, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in r.choices)
    check_usage(r.usage, completion_tokens=3 * 8)
    # Greedy samples are identical.
    g = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=8, n=2,
                                  temperature=0)
    assert len(g.choices) == 2
    assert g.choices[0].text == g.choices[1].text
    assert g.choices[0].finish_reason == g.choices[1].finish_reason
    assert g.usage.completion_tokens % 2 == 0 and 2 <= g.usage.completion_tokens <= 16
    # Streamed n=2: every chunk names its choice, each choice finishes once.
    chunks = list(client.chat.completions.create(model=server.model_name, messages=CHAT,
                                                 max_tokens=6, n=2, temperature=1.0, seed=3,
                                                 stream=True, extra_body={"ignore_eos": True}))
    finished = [ch.choices[0].index for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert sorted(finished) == [0, 1]


def test_seed_reproducible(client, server):
    kw = dict(model=server.model_name, prompt=PROMPT, max_tokens=10, temperature=1.0, seed=1234)
    a = client.completions.create(**kw).choices[0].text
    b = client.completions.create(**kw).choices[0].text
    assert a == b


def test_chat_logprobs(client, server):
    r = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=6,
                                       temperature=0, logprobs=True, top_logprobs=3,
                                       extra_body={"ignore_eos": True})
    c = r.choices[0]
    assert c.logprobs is not None and c.logprobs.content is not None
    content = c.logprobs.content
    assert len(content) == r.usage.completion_tokens == 6
    assert "".join(t.token for t in content) == c.message.content
    for t in content:
        assert isinstance(t.token, str)
        assert t.logprob <= 0.0 and math.isfinite(t.logprob)
        assert len(t.top_logprobs) == 3
        lps = [x.logprob for x in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-4)
        assert t.bytes is None or bytes(t.bytes).decode("utf-8", "replace") is not None


def test_chat_logprobs_off_by_default(client, server):
    r = client.chat.completions.create(model=server.model_name, messages=CHAT, max_tokens=3,
                                       temperature=0)
    assert r.choices[0].logprobs is None


def test_completion_logprobs(client, server):
    r = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=5,
                                  temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert lp is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.text_offset) == 5
    assert lp.text_offset == sorted(lp.text_offset)
    for tok, lpv, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert lpv <= 0.0
        assert len(top) == 2
        best = max(top, key=top.get)
        assert best == tok


def test_extensions_accepted(client, server):
    r = client.completions.create(model=server.model_name, prompt=PROMPT, max_tokens=4,
                                  temperature=0.8, top_p=0.9, seed=5, presence_penalty=0.5,
                                  frequency_penalty=0.5, user="someone",
                                  extra_body={"top_k": 20, "min_p": 0.05,
                                              "repetition_penalty": 1.1})
    assert r.choices[0].finish_reason in ("stop", "length")


def test_max_completion_tokens(client, server):
    r = client.chat.completions.create(model=server.model_name, messages=CHAT,
                                       max_completion_tokens=3, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3
    assert r.choices[0].finish_reason == "length"


def test_cached_tokens_field(client, server):
    """Sent twice: cached_tokens is what the second request really reused
    (0 without a prefix cache); never more than the prompt."""
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in French."}]
    for _ in range(2):
        r = client.chat.completions.create(model=server.model_name, messages=msgs, max_tokens=2,
                                           temperature=0)
        check_usage(r.usage)


def test_system_and_multi_turn(client, server):
    msgs = [{"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"}]
    r = client.chat.completions.create(model=server.model_name, messages=msgs, max_tokens=5,
                                       temperature=0)
    single = client.chat.completions.create(model=server.model_name, messages=msgs[-1:],
                                            max_tokens=5, temperature=0)
    assert r.usage.prompt_tokens > single.usage.prompt_tokens
