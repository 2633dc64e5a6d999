"""Kafka cluster ids the storage tool accepts as an argument."""

from __future__ import annotations

import base64
import uuid

import pytest

from deploy.local import kafka


def test_cluster_id_is_a_uuid_in_unpadded_urlsafe_base64() -> None:
    cluster_id = kafka.new_cluster_id()
    assert len(cluster_id) == 22
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert uuid.UUID(bytes=raw).version == 4


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 as the first byte encodes to "-" first; the generator must draw again
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().startswith("-")
    assert kafka.new_cluster_id() == base64.urlsafe_b64encode(b"\x10" + bytes(15)).decode()[:22]
