"""MQTT output: QoS 1 publishing, one connection per pilot (MQTT user = tenant id).

The broker's ACL lets user ``{tenant}`` write only ``pilots/{tenant}/#``: a ``wrong_tenant`` message
(published as tenant A on B's prefix) is refused. With MQTT 5 Mosquitto answers such a publish with a
PUBACK whose reason code is "not authorized"; the publisher counts those as ``refused``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pilotstream.errors import PilotstreamError, ServiceUnavailable
from pilotstream.logs import get_logger
from pilotstream.settings import BaseSettings

log = get_logger(__name__)


@dataclass(slots=True)
class PublishStats:
    """Counts of a publisher's work."""

    sent: int = 0  # publish calls
    acked: int = 0  # PUBACKs with a success reason code
    refused: int = 0  # PUBACKs with an error reason code (e.g. not authorized)
    refused_topics: list[str] = field(default_factory=list)  # first refused topics, for messages


class MqttPublisher:
    """Publish messages at QoS 1 as pilot users; ``with`` closes every connection after a flush."""

    def __init__(
        self,
        *,
        settings: BaseSettings,
        client_prefix: str = "pilotstream-sim",
        max_outstanding: int = 500,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if max_outstanding < 1:
            msg = f"max_outstanding must be >= 1, not {max_outstanding}"
            raise ValueError(msg)
        self._settings = settings
        self._prefix = client_prefix
        self._max = max_outstanding
        self._timeout = connect_timeout_s
        self._clients: dict[str, mqtt.Client] = {}
        self._pending: dict[tuple[str, int], str] = {}  # (user, mid) -> topic
        self._early: set[tuple[str, int]] = set()  # acks that arrived before publish() returned
        self._cond = threading.Condition()
        self.stats = PublishStats()

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                self.flush()
        finally:
            self.close()

    def publish(self, user: str, topic: str, payload: bytes, msg_id: str) -> None:
        """Publish one message as ``user`` (blocks while too many are unacknowledged)."""
        client = self._clients.get(user) or self._connect(user)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("msg-id", msg_id)
        with self._cond:
            while len(self._pending) >= self._max:
                self._cond.wait(1.0)
        # paho calls on_publish under its own lock: never hold ours while calling into paho
        info = client.publish(topic, payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            msg = f"publish to {topic} failed: {mqtt.error_string(info.rc)}"
            raise ServiceUnavailable(msg)
        with self._cond:
            self.stats.sent += 1
            key = (user, info.mid)
            if key in self._early:  # acknowledged before we got here
                self._early.discard(key)
            else:
                self._pending[key] = topic

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every published message is acknowledged (or refused)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f"{len(self._pending)} messages not acknowledged after {timeout_s} s"
                    raise ServiceUnavailable(msg)
                self._cond.wait(min(left, 1.0))

    def close(self) -> None:
        """Disconnect every client."""
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()
        self._clients.clear()

    def _connect(self, user: str) -> mqtt.Client:
        s = self._settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{self._prefix}-{os.getpid()}-{user}",  # two runs never kick each other off
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(user, s.mqtt_pilot_password)
        client.max_inflight_messages_set(min(self._max, 100))
        connected = threading.Event()
        outcome: list[ReasonCode] = []

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
            outcome.append(rc)
            connected.set()

        client.on_connect = on_connect
        client.on_publish = self._on_publish(user)
        try:
            client.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
        except OSError as exc:
            msg = f"MQTT broker {s.mqtt_host}:{s.mqtt_port} unreachable: {exc}"
            raise ServiceUnavailable(msg) from exc
        client.loop_start()
        if not connected.wait(self._timeout) or outcome[0].is_failure:
            client.loop_stop()
            why = str(outcome[0]) if outcome else "no CONNACK"
            msg = f"MQTT connect as {user} refused: {why}"
            raise PilotstreamError(msg, reason="mqtt_connect")
        log.info("mqtt_connected", user=user, host=s.mqtt_host, port=s.mqtt_port)
        self._clients[user] = client
        return client

    def _on_publish(self, user: str):  # type: ignore[no-untyped-def]
        def on_publish(c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
            with self._cond:
                if (user, mid) not in self._pending:
                    self._early.add((user, mid))
                topic = self._pending.pop((user, mid), "")
                if rc.is_failure:
                    self.stats.refused += 1
                    if len(self.stats.refused_topics) < 20:
                        self.stats.refused_topics.append(topic)
                else:
                    self.stats.acked += 1
                self._cond.notify_all()

        return on_publish
