"""A small server-sent-events client on aiohttp for the concurrency tests."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import aiohttp


@dataclass
class StreamResult:
    status: int = 0
    text: str = ""
    chunks: list = field(default_factory=list)
    done: bool = False          # saw "data: [DONE]"
    finish_reason: str | None = None
    usage: dict | None = None
    error: str | None = None


async def stream_completion(session: aiohttp.ClientSession, base_url: str, path: str,
                            body: dict, stop_after_chunks: int | None = None) -> StreamResult:
    """POSTs a streaming request and reads its events. With stop_after_chunks,
    closes the connection after that many content chunks (a client leaving
    mid-stream)."""
    res = StreamResult()
    body = {**body, "stream": True}
    async with session.post(base_url + path, json=body) as resp:
        res.status = resp.status
        if resp.status != 200:
            res.error = (await resp.read()).decode(errors="replace")
            return res
        buf = b""
        async for raw in resp.content:
            buf += raw
            if not buf.endswith(b"\n"):
                continue
            line = buf.decode().strip()
            buf = b""
            if not line or line.startswith(":"):
                continue
            if not line.startswith("data:"):
                res.error = f"not an SSE data line: {line!r}"
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                res.done = True
                continue
            if res.done:
                res.error = "data after [DONE]"
            chunk = json.loads(data)
            if "error" in chunk:
                res.error = json.dumps(chunk["error"])
                continue
            res.chunks.append(chunk)
            if chunk.get("usage"):
                res.usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                delta = choice.get("delta")
                res.text += (delta.get("content") or "") if delta is not None else choice.get("text", "")
                if choice.get("finish_reason"):
                    res.finish_reason = choice["finish_reason"]
            if stop_after_chunks is not None and len(res.chunks) >= stop_after_chunks:
                resp.close()  # drop the connection without reading on
                return res
    return res
