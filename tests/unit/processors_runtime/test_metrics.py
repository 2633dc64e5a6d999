"""The processor's /metrics and /health endpoint."""

from __future__ import annotations

import asyncio

from processors.metrics import ProcessorMetrics, serve_http


async def _get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition("\r\n\r\n")
    return head.splitlines()[0], body


async def test_metrics_and_health() -> None:
    metrics = ProcessorMetrics()
    metrics.observe_batch(readings=500, records=25, seconds=0.05)
    metrics.rejections.labels("too_late").inc(3)
    metrics.lag.labels("0").set(7)
    state = {"healthy": True}
    server = await serve_http(0, metrics, lambda: state)
    port = server.sockets[0].getsockname()[1]
    try:
        status, body = await _get(port, "/metrics")
        assert status.endswith("200 OK")
        assert "processor_readings_total 500.0" in body
        assert 'processor_rejections_total{reason="too_late"} 3.0' in body
        assert 'processor_lag{partition="0"} 7.0' in body
        assert (await _get(port, "/health"))[0].endswith("200 OK")
        state["healthy"] = False
        status, body = await _get(port, "/health")
        assert status.endswith("503 Service Unavailable")
        assert '"healthy": false' in body
    finally:
        server.close()
        await server.wait_closed()
