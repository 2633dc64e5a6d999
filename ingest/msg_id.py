"""The publisher's message id: the MQTT 5 user property ``msg-id``, read from a PUBLISH packet's
properties without building paho's Properties object, bounded and sanitised for dead letters.

Dead letters carry it so a refused message can be matched with what its sender logged (the
simulator's fault log). Absent, malformed or empty: ``""``; the message itself is handled as usual.
"""

from __future__ import annotations

import re

MSG_ID_KEY = b"msg-id"  # user property name
MAX_MSG_ID_CHARS = 128  # longer ids are cut
_SAFE = re.compile(rb"[\x21-\x7e]{1,128}")  # printable ASCII without spaces: kept as is
_UNSAFE = re.compile(r"[^\x21-\x7e]")
_USER_PROPERTY = 0x26
# other PUBLISH properties (MQTT 5.0, 2.2.2.2) and their value sizes; -2: 2-byte length + bytes
_SKIP = {0x01: 1, 0x02: 4, 0x23: 2, 0x03: -2, 0x08: -2, 0x09: -2}
_SUBSCRIPTION_ID = 0x0B  # a variable byte integer


def find_user_property(
    buf: bytes | bytearray, start: int, end: int, key: bytes = MSG_ID_KEY
) -> bytes | None:
    """The value of the first user property named ``key`` in ``buf[start:end]`` (a PUBLISH
    packet's property block, without its length), or None when absent or malformed."""
    i = start
    try:
        while i < end:
            pid = buf[i]
            i += 1
            if pid == _USER_PROPERTY:
                klen = int.from_bytes(buf[i : i + 2], "big")
                name = buf[i + 2 : i + 2 + klen]
                i += 2 + klen
                vlen = int.from_bytes(buf[i : i + 2], "big")
                value = buf[i + 2 : i + 2 + vlen]
                i += 2 + vlen
                if i > end:
                    return None
                if name == key:
                    return bytes(value)
            elif pid == _SUBSCRIPTION_ID:
                while buf[i] & 0x80:
                    i += 1
                i += 1
            elif pid in _SKIP:
                size = _SKIP[pid]
                i += size if size > 0 else 2 + int.from_bytes(buf[i : i + 2], "big")
            else:  # not a PUBLISH property: the block is malformed
                return None
    except IndexError:
        return None
    return None


def clean_msg_id(raw: bytes | str | None) -> str:
    """A message id safe to store: printable ASCII, no spaces, at most 128 characters, else ""
    for nothing; other characters become ``_``."""
    if not raw:
        return ""
    if isinstance(raw, bytes):
        if _SAFE.fullmatch(raw):
            return raw.decode("ascii")
        raw = raw[: 4 * MAX_MSG_ID_CHARS].decode("utf-8", "replace")
    return _UNSAFE.sub("_", raw[:MAX_MSG_ID_CHARS])
