"""One message through each service, as a user would: used by the first demo and the stack tests."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from pilotstream import codec
from pilotstream.contracts import Reading, batch_readings
from pilotstream.settings import BaseSettings


@dataclass(frozen=True)
class MqttResult:
    """What a gateway-user subscriber saw after a pilot published."""

    delivered: list[bytes]  # payloads received, in order
    publish_rc: int  # reason code of the publish (0 = accepted by the client)


def _client(settings: BaseSettings, user: str, password: str, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    return c


def mqtt_roundtrip(
    settings: BaseSettings, *, publisher: str, topic: str, payload: bytes, wait_s: float = 3.0
) -> MqttResult:
    """Publish ``payload`` at QoS 1 as pilot ``publisher`` and collect what the gateway user receives.

    The broker ACL silently drops a publish outside the pilot's own prefix (MQTT 3.1.1/5 brokers do
    not disconnect for it), so "refused" shows as nothing delivered.
    """
    got: list[bytes] = []
    subscribed = threading.Event()
    arrived = threading.Event()
    tag = uuid.uuid4().hex[:8]
    sub = _client(
        settings, settings.mqtt_gateway_user, settings.mqtt_gateway_password, f"smoke-sub-{tag}"
    )
    sub.on_subscribe = lambda *a, **k: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        arrived.set()

    sub.on_message = on_message
    sub.connect(settings.mqtt_host, settings.mqtt_port)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    if not subscribed.wait(5):
        sub.loop_stop()
        msg = "gateway user could not subscribe"
        raise RuntimeError(msg)
    pub = _client(settings, publisher, settings.mqtt_pilot_password, f"smoke-pub-{tag}")
    connack: list[object] = []
    connected = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object = None) -> None:
        connack.append(rc)
        connected.set()

    pub.on_connect = on_connect
    pub.connect(settings.mqtt_host, settings.mqtt_port)
    pub.loop_start()
    connected.wait(5)
    if not connack or getattr(connack[0], "is_failure", True):
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
        msg = f"MQTT connect as {publisher} refused: {connack[0] if connack else 'no CONNACK'}"
        raise RuntimeError(msg)
    info = pub.publish(topic, payload, qos=1)
    info.wait_for_publish(5)
    arrived.wait(wait_s)
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return MqttResult(delivered=got, publish_rc=info.rc)


async def _kafka_roundtrip(settings: BaseSettings, topic: str, reading: Reading) -> list[Reading]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    batch = batch_readings([reading])[0]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topic, codec.encode(batch), key=batch.device_id.encode()
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        records = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
    finally:
        await consumer.stop()
    return [r for rec in records.get(tp, []) for r in codec.decode_batch(rec.value).readings()]


def kafka_roundtrip(settings: BaseSettings, topic: str, reading: Reading) -> list[Reading]:
    """Produce one reading batch (acks=all, idempotent) and read it back from its offset."""
    return asyncio.run(_kafka_roundtrip(settings, topic, reading))


def hypertable_roundtrip(
    settings: BaseSettings, table: str, rows: list[tuple[float, float]]
) -> list[tuple[object, ...]]:
    """Create a hypertable ``table`` (if missing), insert (epoch s, value) rows, read 15-min buckets."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (ts timestamptz NOT NULL, device_id text NOT NULL, "
            "value double precision NOT NULL, UNIQUE (device_id, ts))"
        )
        conn.execute("SELECT create_hypertable(%s, 'ts', if_not_exists => TRUE)", (table,))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (to_timestamp(%s), 'smoke-1', %s) ON CONFLICT DO NOTHING",
                rows,
            )
        return conn.execute(
            f"SELECT time_bucket('15 minutes', ts) AS b, count(*), sum(value) FROM {table} "
            "GROUP BY b ORDER BY b"
        ).fetchall()


def now_ms() -> int:
    """UTC now in ms."""
    return int(time.time() * 1000)
