"""The ``msg-id`` user property: found in a PUBLISH property block as paho encodes it, bounded and
sanitised, and carried onto dead letters."""

from __future__ import annotations

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt_source import Message
from ingest.msg_id import clean_msg_id, find_user_property
from pilotstream.codec import decode_rejection

from .builders import make_builder


def _block(**props: object) -> bytes:
    """A PUBLISH property block as paho writes it on the wire, without its length prefix."""
    p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in props.items():
        setattr(p, name, value)
    packed: bytes = p.pack()  # type: ignore[no-untyped-call]
    # the block starts with its length as a variable byte integer: skip it
    at = 1
    while packed[at - 1] & 0x80:
        at += 1
    return packed[at:]


def test_found_among_other_properties() -> None:
    block = _block(
        PayloadFormatIndicator=1,
        MessageExpiryInterval=60,
        ContentType="application/json",
        CorrelationData=b"\x00\x01",
        UserProperty=[("other", "x"), ("msg-id", "paris-energy-1-evse-000:353")],
    )
    prefix = b"\xff\xff"  # the block sits inside a larger packet
    buf = prefix + block + b'{"payload": 1}'
    found = find_user_property(buf, len(prefix), len(prefix) + len(block))
    assert found == b"paris-energy-1-evse-000:353"


def test_absent_or_malformed_is_none() -> None:
    block = _block(UserProperty=[("other", "x")])
    assert find_user_property(block, 0, len(block)) is None
    assert find_user_property(b"", 0, 0) is None
    good = _block(UserProperty=[("msg-id", "abc")])
    assert find_user_property(good[:-1], 0, len(good) - 1) is None  # value cut short
    assert find_user_property(b"\x7f\x00", 0, 2) is None  # no such property identifier


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"dev-1:17#dup", "dev-1:17#dup"),
        (None, ""),
        (b"", ""),
        (b"a b\x00c", "a_b_c"),
        ("d\u00e9j\u00e0", "d_j_"),
        (b"\xff\xfe", "__"),
        (b"x" * 500, "x" * 128),
    ],
)
def test_clean_msg_id(raw: bytes | str | None, expected: str) -> None:
    assert clean_msg_id(raw) == expected


def test_dead_letters_carry_the_message_id() -> None:
    builder = make_builder()
    now = int(time.time() * 1000)
    msgs = [
        Message(1, 1, "pilots/paris-energy-1/json/m1", b'{"readings": [', now, "m1:7"),
        Message(2, 1, "pilots/paris-energy-1/json/m1", b"{", now),
    ]
    letters = [decode_rejection(r.value) for r in builder.build(msgs).records]
    assert [(x.reason, x.msg_id) for x in letters] == [("bad_json", "m1:7"), ("bad_json", "")]
