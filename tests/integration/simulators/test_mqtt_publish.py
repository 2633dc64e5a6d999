"""Publish a demo slice to the real Mosquitto as pilot users; a gateway-user subscriber receives it
byte for byte, and a message published under another pilot's prefix is refused, never delivered."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pilotstream.settings import BaseSettings
from simulators.publishers.mqtt import MqttPublisher
from simulators.run import simulate
from simulators.scenario import load_scenario

pytestmark = pytest.mark.integration


def _slice() -> pl.DataFrame:
    run = simulate(load_scenario("demo"))
    m = run.messages.filter(pl.col("fault").is_in(["", "wrong_tenant"]))
    good = (
        m.filter(pl.col("fault") == "")
        .group_by("fmt", maintain_order=True)
        .head(5)
        .select(m.columns)
    )
    wrong = m.filter(pl.col("fault") == "wrong_tenant").head(3)
    return pl.concat([good, wrong])


class _Subscriber:
    """The gateway user on ``pilots/#``, collecting messages by their msg-id user property."""

    def __init__(self, settings: BaseSettings) -> None:
        self.got: dict[str, tuple[str, bytes]] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"simtest-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(settings.mqtt_gateway_user, settings.mqtt_gateway_password)
        self.client.on_connect = lambda c, *_: c.subscribe("pilots/#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []) or [])
        if "msg-id" in props:
            with self.lock:
                self.got[props["msg-id"]] = (msg.topic, msg.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_demo_slice_reaches_the_gateway_user_and_wrong_prefix_is_refused(
    mqtt_service: BaseSettings,
) -> None:
    msgs = _slice()
    good = msgs.filter(pl.col("fault") == "")
    wrong = msgs.filter(pl.col("fault") == "wrong_tenant")
    assert set(good["fmt"]) == {"json", "senml", "ocpp", "tts", "chirpstack"}
    assert wrong.height == 3
    sub = _Subscriber(mqtt_service)
    try:
        assert sub.ready.wait(10), "subscription not acknowledged"
        run_tag = uuid.uuid4().hex[:8]
        with MqttPublisher(settings=mqtt_service, client_prefix=f"simtest-{run_tag}") as pub:
            for user, topic, payload, msg_id in msgs.select(
                "user", "topic", "payload", "msg_id"
            ).iter_rows():
                pub.publish(user, topic, payload.encode(), f"{run_tag}/{msg_id}")
        assert pub.stats.refused == wrong.height
        assert pub.stats.acked == good.height
        deadline = time.monotonic() + 15
        want = {f"{run_tag}/{m}" for m in good["msg_id"]}
        while time.monotonic() < deadline and not want <= set(sub.got):
            time.sleep(0.1)
        time.sleep(0.5)  # a refused message would have arrived by now
        with sub.lock:
            got = dict(sub.got)
    finally:
        sub.close()
    for msg_id, topic, payload in good.select("msg_id", "topic", "payload").iter_rows():
        assert got[f"{run_tag}/{msg_id}"] == (topic, payload.encode())
    assert not {f"{run_tag}/{m}" for m in wrong["msg_id"]} & set(got)
