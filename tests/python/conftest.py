"""Fixtures for the server tests.

tests/python/run.sh starts one `kvinfer serve` for the whole session and
passes its address in KVINFER_BASE_URL; without it (pytest run by hand) the
session fixture starts its own. Tests that need a server with other options
(an API key, a tiny KV pool, a short queue) start one with ServerProcess.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serverproc  # noqa: E402


class Server:
    def __init__(self, base_url: str, proc: serverproc.ServerProcess | None):
        self.base_url = base_url.rstrip("/")
        self.proc = proc
        status, _, raw = serverproc.request(self.base_url, "GET", "/v1/models")
        assert status == 200, f"/v1/models answered {status}: {raw[:200]!r}"
        self.model_name = json.loads(raw)["data"][0]["id"]

    def post(self, path, body, headers=None, timeout=120):
        return serverproc.post_json(self.base_url, path, body, headers, timeout)

    def metrics(self):
        return serverproc.metrics(self.base_url)


@pytest.fixture(scope="session")
def server():
    url = os.environ.get("KVINFER_BASE_URL")
    if url:
        yield Server(url, None)
        return
    try:
        proc = serverproc.ServerProcess(["--max-seqs", "64", "--kv-memory-mib", "512"], name="server-session").start()
    except serverproc.ServerError as e:
        pytest.fail(str(e))
    try:
        yield Server(proc.base_url, proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def client(server):
    try:
        import openai
    except ImportError:
        pytest.fail("missing fixture: the openai package (build/venv; run scripts/setup.sh)")
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="not-needed",
                         max_retries=0, timeout=180)


def pytest_configure(config):
    serverproc.ARTIFACTS.mkdir(parents=True, exist_ok=True)
