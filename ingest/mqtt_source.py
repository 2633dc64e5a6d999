"""The MQTT side of the gateway: a paho-mqtt 2.x client confined to one network thread.

The thread owns the client: it connects (MQTT 5, ``clean_start=False``, session expiry > 0,
``manual_ack=True``), reads, and sends the acks the asyncio side queues with :meth:`MqttSource.ack`.
Received messages go to a thread-safe :class:`Inbox` that wakes the asyncio loop only when it
sleeps. Nothing raised in a callback escapes into paho's loop. Reconnects back off with a capped,
jittered delay.
"""

from __future__ import annotations

import asyncio
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.msg_id import MSG_ID_KEY, clean_msg_id
from ingest.paho_client import FastClient
from pilotstream.logs import get_logger

_log = get_logger(__name__)
READS_PER_WAKE = 64  # packets read per select() wake-up; paho reads one per loop_read call


@dataclass(slots=True)
class Message:
    """One received MQTT message, in arrival order."""

    mid: int  # MQTT packet id, for the ack
    qos: int
    topic: str
    payload: bytes
    received_at_ms: int  # UTC ms
    msg_id: str = ""  # publisher's message id (MQTT 5 user property ``msg-id``), sanitised


class Inbox:
    """Thread-safe FIFO from the paho thread to the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Message] = deque()
        self._event = asyncio.Event()
        self._waiting = False

    def put(self, msg: Message) -> None:
        """Called on the network thread."""
        self._items.append(msg)
        if self._waiting:
            self._waiting = False
            self._loop.call_soon_threadsafe(self._event.set)

    def __len__(self) -> int:
        return len(self._items)

    async def take(self, max_items: int, linger_s: float, idle_s: float = 0.5) -> list[Message]:
        """Up to ``max_items`` messages: wait up to ``idle_s`` for the first, then ``linger_s``."""
        out: list[Message] = []
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while len(out) < max_items:
            while self._items and len(out) < max_items:
                out.append(self._items.popleft())
            if len(out) >= max_items:
                break
            now = loop.time()
            if deadline is None:
                deadline = now + (linger_s if out else idle_s)
            elif out and deadline > now + linger_s:
                deadline = now + linger_s
            if now >= deadline:
                break
            self._event.clear()
            self._waiting = True
            if self._items:  # arrived between the check and the flag: no wake-up was sent
                self._waiting = False
                continue
            try:
                await asyncio.wait_for(self._event.wait(), deadline - now)
            except TimeoutError:
                self._waiting = False
        return out


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Connection parameters (taken from GatewaySettings by the gateway)."""

    host: str
    port: int
    user: str
    password: str
    client_id: str
    subscription: str
    session_expiry_s: int
    receive_maximum: int
    keepalive_s: int = 30
    max_buffered: int = 8000  # received but not yet taken by the gateway; then reading pauses
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0


class MqttSource:
    """Receives messages into an :class:`Inbox`; acks what the asyncio side hands back."""

    def __init__(self, *, config: MqttConfig, inbox: Inbox, on_state: Callable[[bool], None]):
        if config.session_expiry_s <= 0:
            msg = "session_expiry_s must be > 0 or the broker forgets the queue on disconnect"
            raise ValueError(msg)
        self._cfg = config
        self._inbox = inbox
        self._on_state = on_state
        self._acks: deque[tuple[int, int]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self._client = FastClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(config.user, config.password)
        self._client.on_connect = self._guard(self._on_connect)
        self._client.on_disconnect = self._guard(self._on_disconnect)
        self._client.on_subscribe = self._guard(self._on_subscribe)
        self._client.on_message = self._guard(self._on_message)
        self._client.on_publish_fast = self._on_publish_fast

    def start(self) -> None:
        """Start the network thread (it connects and reconnects by itself)."""
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def ack(self, mid: int, qos: int) -> None:
        """Queue an ack; the network thread sends it (paho is used from that thread only)."""
        self._acks.append((mid, qos))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send the queued acks, disconnect and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ---- network thread -------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._cfg.backoff_min_s
        while not self._stop.is_set():
            try:
                self._connect()
                delay = self._cfg.backoff_min_s
                self._serve()
            except Exception as exc:  # network errors of any kind: back off and retry
                _log.warning("mqtt_connection_lost", error=repr(exc), retry_s=round(delay, 2))
            self.connected = False
            self._on_state(False)
            if self._stop.wait(delay * random.uniform(0.5, 1.5)):
                break
            delay = min(delay * 2, self._cfg.backoff_max_s)
        self._shutdown()

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._cfg.session_expiry_s
        props.ReceiveMaximum = self._cfg.receive_maximum
        self._client.reset_buffer()
        self._client.connect(
            self._cfg.host,
            self._cfg.port,
            keepalive=self._cfg.keepalive_s,
            clean_start=False,
            properties=props,
        )

    def _serve(self) -> None:
        client = self._client
        while not self._stop.is_set():
            self._flush_acks()
            sock = client.socket()
            if sock is None:
                msg = "socket closed"
                raise ConnectionError(msg)
            # Backpressure: past max_buffered unprocessed messages, stop reading; TCP then makes
            # the broker keep the rest in the session queue (memory stays bounded here).
            reading = len(self._inbox) < self._cfg.max_buffered
            wlist = [sock] if client.want_write() else []
            wait = 0.0 if reading and client.buffered() else 0.01
            readable, writable, _ = select.select([sock] if reading else [], wlist, [], wait)
            if reading and (readable or client.buffered()):
                for _ in range(READS_PER_WAKE):
                    rc = client.loop_read()
                    if rc != mqtt.MQTT_ERR_SUCCESS:
                        raise ConnectionError(mqtt.error_string(rc))
                    if not client.buffered():
                        break
            if writable or client.want_write():
                rc = client.loop_write()
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    raise ConnectionError(mqtt.error_string(rc))
            rc = client.loop_misc()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(mqtt.error_string(rc))

    def _flush_acks(self) -> None:
        qos1: list[int] = []
        while self._acks:
            mid, qos = self._acks.popleft()
            if qos == 1:
                qos1.append(mid)
            else:
                self._send_acks(qos1)
                qos1 = []
                self._client.ack(mid, qos)
        self._send_acks(qos1)

    def _send_acks(self, mids: list[int]) -> None:
        if mids:
            self._client.send_pubacks(mids)

    def _shutdown(self) -> None:
        """Flush pending acks, then a clean DISCONNECT (the session and its queue stay)."""
        try:
            if self._client.socket() is not None:
                self._flush_acks()
                deadline = time.monotonic() + 2.0
                while self._client.want_write() and time.monotonic() < deadline:
                    self._client.loop_write()
                self._client.disconnect()
                self._client.loop_write()
        except Exception as exc:  # best effort on the way out; unacked messages are redelivered
            _log.warning("mqtt_shutdown_incomplete", error=repr(exc))

    # ---- callbacks (network thread) ----------------------------------------------------------
    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:  # an exception here would escape paho's loop and drop the link
                _log.error("mqtt_callback_failed", callback=fn.__name__, exc=True)

        return call

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            _log.error("mqtt_connect_refused", reason=str(rc))
            return
        client.subscribe(self._cfg.subscription, qos=1)
        _log.info(
            "mqtt_connected",
            client_id=self._cfg.client_id,
            session_present=flags.session_present,
            subscription=self._cfg.subscription,
        )

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        # Up (metric gateway_mqtt_up, health) once the broker confirmed the subscription, not at
        # CONNACK: a publisher started on "connected" lost the messages sent before the SUBACK
        # (nobody was subscribed yet; seen as a replay missing its first 725 messages).
        refused = [str(rc) for rc in codes if rc.is_failure]
        if refused:
            _log.error(
                "mqtt_subscribe_refused", subscription=self._cfg.subscription, reasons=refused
            )
            return
        self.connected = True
        self._on_state(True)
        _log.info("mqtt_subscribed", subscription=self._cfg.subscription)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connected = False
        self._on_state(False)
        _log.warning("mqtt_disconnected", reason=str(rc))

    def _on_publish_fast(
        self, topic: bytes, mid: int, qos: int, payload: bytes, msg_id: bytes | None
    ) -> None:
        now_ms = time.time_ns() // 1_000_000
        text = topic.decode("utf-8", "replace")
        self._inbox.put(Message(mid, qos, text, payload, now_ms, clean_msg_id(msg_id)))

    def _on_message(self, _c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        now_ms = time.time_ns() // 1_000_000
        # Every message must reach the inbox, or its ack would hold back all later ones.
        topic = bytes(m._topic).decode("utf-8", "replace")  # m.topic raises on bad UTF-8
        self._inbox.put(Message(m.mid, m.qos, topic, bytes(m.payload), now_ms, _msg_id(m)))


def _msg_id(m: mqtt.MQTTMessage) -> str:
    """The ``msg-id`` user property of a message paho parsed (QoS 2), sanitised."""
    props = getattr(m, "properties", None)
    key = MSG_ID_KEY.decode()
    for name, value in getattr(props, "UserProperty", None) or ():
        if name == key:
            return clean_msg_id(value)
    return ""


def drop_session(*, host: str, port: int, user: str, password: str, client_id: str) -> None:
    """Make the broker forget a client's persistent session and its queue (decommissioned
    gateways, tests, benchmarks): connect with a clean start and session expiry 0, disconnect."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(host, port, clean_start=True, properties=props)
    client.loop(2.0)
    client.disconnect()
    client.loop(0.2)
