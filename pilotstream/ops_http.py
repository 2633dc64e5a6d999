"""The operations endpoint every service serves on 127.0.0.1: ``GET /metrics`` (Prometheus text)
and ``GET /health`` (JSON; 200 when ``healthy`` is true, else 503)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from pilotstream.logs import get_logger

_log = get_logger(__name__)


async def serve_ops(
    port: int, render: Callable[[], bytes], health: Callable[[], dict[str, Any]]
) -> asyncio.Server:
    """Start the endpoint on 127.0.0.1:``port`` (0 picks a free port); returns the server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/metrics":
                status, body, ctype = 200, render(), "text/plain; version=0.0.4"
            elif path == "/health":
                state = health()
                status = 200 if state.get("healthy") else 503
                body, ctype = json.dumps(state).encode(), "application/json"
            else:
                status, body, ctype = 404, b"not found\n", "text/plain"
            head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {ctype}\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            _log.debug("ops_http_client_error", error=repr(exc))
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)
