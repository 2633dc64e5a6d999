"""Encoders of LoRaWAN network-server uplinks: The Things Stack v3 and ChirpStack v4.

One uplink per device and timestamp; readings travel in the decoded payload as a flat object
``{metric: value}`` in canonical units; the frame counter is the device's step number.
"""

from __future__ import annotations

import zlib

import polars as pl

from simulators.formats._expr import cat, iso, json_number, quoted, sent_value

TTS_TENANT = "ai4cities"  # The Things Stack tenant (cluster) the applications live in
CHIRPSTACK_TENANT_ID = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"  # ChirpStack tenant UUID

_KEYS = ["msg_id", "tenant", "device_id", "fmt", "application", "slot"]


def dev_eui(device_id: str) -> str:
    """A stable 16-hex-digit DevEUI for a TTS device id."""
    return f"70b3d57ed0{zlib.crc32(device_id.encode()) & 0xFFFFFF:06x}"


def _uplinks(df: pl.DataFrame) -> pl.DataFrame:
    frag = cat(quoted(pl.col("metric")), ":", json_number(sent_value()))
    return (
        df.with_columns(frag=frag)
        .group_by(_KEYS, maintain_order=True)
        .agg(pl.col("frag").str.join(","), pl.col("ts_ms").max(), pl.len().alias("n_readings"))
        .with_columns(obj=cat("{", pl.col("frag"), "}"), time=iso())
    )


def encode_tts(df: pl.DataFrame) -> pl.DataFrame:
    """The Things Stack v3 uplink JSON under ``pilots/{tenant}/tts/v3/{app}@{tts}/devices/{id}/up``.

    Zero fields are omitted as TTS does (``f_cnt`` 0 is absent).
    """
    ups = _uplinks(df)
    euis = pl.DataFrame(
        {
            "device_id": (ids := ups["device_id"].unique(maintain_order=True)),
            "eui": [dev_eui(d) for d in ids],
        }
    )
    ups = ups.join(euis, on="device_id", how="left", maintain_order="left")
    fcnt = (
        pl.when(pl.col("slot") > 0)
        .then(cat('"f_cnt":', pl.col("slot").cast(pl.String), ","))
        .otherwise(pl.lit(""))
    )
    payload = cat(
        '{"end_device_ids":{"device_id":',
        quoted(pl.col("device_id")),
        ',"application_ids":{"application_id":',
        quoted(pl.col("application")),
        '},"dev_eui":',
        quoted(pl.col("eui").str.to_uppercase()),
        '},"received_at":',
        quoted(pl.col("time")),
        ',"uplink_message":{"f_port":1,',
        fcnt,
        '"decoded_payload":',
        pl.col("obj"),
        ',"received_at":',
        quoted(pl.col("time")),
        "}}",
    )
    topic = cat(
        "pilots/",
        pl.col("tenant"),
        "/tts/v3/",
        pl.col("application"),
        "@",
        TTS_TENANT,
        "/devices/",
        pl.col("device_id"),
        "/up",
    )
    return ups.with_columns(payload=payload, topic=topic, user=pl.col("tenant"))


def encode_chirpstack(df: pl.DataFrame) -> pl.DataFrame:
    """ChirpStack v4 uplink event JSON under
    ``pilots/{tenant}/chirpstack/application/{app}/device/{devEui}/event/up``."""
    ups = _uplinks(df)
    dedup = cat(
        pl.col("slot").cast(pl.String).str.zfill(8),
        "-0000-4000-8000-",
        pl.col("device_id").str.slice(4, 12),
    )
    payload = cat(
        '{"deduplicationId":',
        quoted(dedup),
        ',"time":',
        quoted(pl.col("time")),
        ',"deviceInfo":{"tenantId":"',
        CHIRPSTACK_TENANT_ID,
        '","applicationId":',
        quoted(pl.col("application")),
        ',"deviceName":',
        quoted(cat("counter-", pl.col("device_id").str.slice(12, 4))),
        ',"devEui":',
        quoted(pl.col("device_id")),
        ',"tags":{}},"fCnt":',
        pl.col("slot").cast(pl.String),
        ',"fPort":1,"object":',
        pl.col("obj"),
        "}",
    )
    topic = cat(
        "pilots/",
        pl.col("tenant"),
        "/chirpstack/application/",
        pl.col("application"),
        "/device/",
        pl.col("device_id"),
        "/event/up",
    )
    return ups.with_columns(payload=payload, topic=topic, user=pl.col("tenant"))
