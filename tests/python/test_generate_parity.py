"""A greedy answer through the server equals `kvinfer generate`'s for the
same prompt and token budget: raw prompts through /v1/completions, and a user
turn through /v1/chat/completions against `generate --chat`."""
from __future__ import annotations

import subprocess

import pytest

import serverproc

CASES = [
    ("The quick brown fox", 24),
    ("def fibonacci(n):", 32),
    ("In 1969, the first humans", 20),
]


def generate(prompt, max_tokens, chat=False):
    cmd = [str(serverproc.BIN), "generate", "--model", str(serverproc.MODEL), "--prompt", prompt,
           "--max-tokens", str(max_tokens), "--temperature", "0", "--threads", serverproc.THREADS]
    if chat:
        cmd.append("--chat")
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    out = res.stdout.decode()
    assert out.endswith("\n")
    return out[:-1]  # generate ends its output with one newline of its own


@pytest.mark.parametrize("prompt,max_tokens", CASES)
def test_completion_equals_generate(server, prompt, max_tokens):
    expected = generate(prompt, max_tokens)
    status, _, body, raw = server.post("/v1/completions", {
        "model": server.model_name, "prompt": prompt, "max_tokens": max_tokens,
        "temperature": 0})
    assert status == 200, raw
    assert body["choices"][0]["text"] == expected


def test_chat_equals_generate_chat(server):
    question = "What is the boiling point of water?"
    expected = generate(question, 24, chat=True)
    status, _, body, raw = server.post("/v1/chat/completions", {
        "model": server.model_name, "messages": [{"role": "user", "content": question}],
        "max_tokens": 24, "temperature": 0})
    assert status == 200, raw
    assert body["choices"][0]["message"]["content"] == expected
