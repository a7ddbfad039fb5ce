"""Starting `kvinfer serve` on a free loopback port and talking to it.

Shared by the pytest fixtures (conftest.py) and usable on its own:

    with ServerProcess(["--max-seqs", "8"]) as srv:
        print(srv.base_url, srv.model_name)

Only the standard library: the tests that need the OpenAI client or aiohttp
import them themselves.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KVINFER_BIN", REPO / "build" / "kvinfer"))
MODEL = Path(os.environ.get("KVINFER_MODEL", REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
THREADS = os.environ.get("KVINFER_TEST_THREADS", "2")
ARTIFACTS = Path(os.environ.get("KVINFER_ARTIFACTS", REPO / "build" / "artifacts"))

LISTENING = re.compile(r"kvinfer serve: listening on (http://[^\s]+)")


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """A `kvinfer serve` child process; always killed on exit."""

    def __init__(self, extra_args=(), name="server", startup_timeout=180.0):
        self.extra_args = list(extra_args)
        self.name = name
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self.model_name = ""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log_lines: list[str] = []
        self._url_event = threading.Event()

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "ServerProcess":
        if not BIN.exists():
            raise ServerError(f"missing fixture: {BIN} (build the kvinfer target)")
        if not MODEL.exists():
            raise ServerError(f"missing fixture: {MODEL} (run scripts/setup.sh)")
        cmd = [str(BIN), "serve", "--model", str(MODEL), "--port", "0", "--host", "127.0.0.1",
               "--threads", THREADS, *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._url_event.wait(0.1):
            if self.proc.poll() is not None:
                raise ServerError(f"{' '.join(cmd)} exited with {self.proc.returncode}:\n"
                                  + "".join(self._log_lines[-40:]))
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"no 'listening on' line from {' '.join(cmd)}")
        while True:
            try:
                status, _, _ = request(self.base_url, "GET", "/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerError("/health never answered 200:\n" + "".join(self._log_lines[-40:]))
            time.sleep(0.1)
        return self

    def _pump(self):
        assert self.proc and self.proc.stderr
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                self._log_lines.append(line)
                if not self._url_event.is_set():
                    m = LISTENING.search(line)
                    if m:
                        self.base_url = m.group(1).rstrip("/")
                        self._url_event.set()

    def stop(self, timeout=30.0) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return "".join(self._log_lines)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- plain HTTP ---------------------------------------------------------------
def request(base_url, method, path, body=None, headers=None, timeout=120):
    """One HTTP request; returns (status, headers, body bytes). `body` may be
    bytes (sent as is) or anything JSON-serialisable."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(base_url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post_json(base_url, path, body, headers=None, timeout=120):
    status, hdrs, raw = request(base_url, "POST", path, body, headers, timeout)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, hdrs, parsed, raw


def metrics(base_url) -> dict[str, float]:
    """/metrics as {sample name with labels: value} (histogram buckets too)."""
    status, _, raw = request(base_url, "GET", "/metrics", timeout=30)
    if status != 200:
        raise ServerError(f"/metrics answered {status}")
    out: dict[str, float] = {}
    for line in raw.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            pass
    return out


def metric(values: dict[str, float], name: str, default=None):
    """A metric's value by name; a labelled family is summed over its labels."""
    if name in values:
        return values[name]
    total, found = 0.0, False
    for key, v in values.items():
        if key.startswith(name + "{"):
            total += v
            found = True
    return total if found else default


def wait_for(predicate, timeout=20.0, interval=0.05):
    """Polls predicate() until it returns something truthy; returns the last value.
    A bound against hanging, not a timing assertion."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
