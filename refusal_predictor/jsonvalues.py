"""JSON values as a log holds them: numbers a float would change, and keys given twice.

A log's fields belong to the user and go back out as they came in: ``json`` reads ``1e400`` as
infinity and ``{"a": 1, "a": 2}`` as ``{"a": 2}``, both silently. The readers decode with
:data:`EXACT_DECODER`, and every output and errors file writes values with :func:`dumps_value`.
"""
from __future__ import annotations

import base64
import datetime
import json
import math
import re
import secrets
from decimal import Decimal


class JsonNumber:
    """A JSON number that a float would change (``1e400`` becomes infinity, which is not JSON;
    ``0.10000000000000000001`` becomes 0.1): kept as its text, and written back as that number.

    Numbers a float holds exactly are floats (``1.50`` is read as 1.5 and written ``1.5``: the
    same value, as any JSON tool writes it)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:  # messages quote values with !r: show the number as the file has it
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __getstate__(self) -> str:
        return self.text

    def __setstate__(self, state: str) -> None:
        self.text = state


def json_float(text: str) -> float | JsonNumber:
    value = float(text)
    if repr(value) == text or (math.isfinite(value) and Decimal(repr(value)) == Decimal(text)):
        return value
    return JsonNumber(text)


class DuplicateField(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """JSON allows a key twice in one object and keeps only the last value: the first would be
    lost without a word (and a duplicated text field would score the other text)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise DuplicateField(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


EXACT_DECODER = json.JSONDecoder(object_pairs_hook=object_without_duplicates, parse_float=json_float)
PLAIN_DECODER = json.JSONDecoder()


def duplicate_reason(key: str) -> str:
    return (f"field {key!r} appears twice in one object; JSON readers keep only the last value, so the "
            "record is not used (rename one of them)")


def dumps_value(value: object) -> str:
    """A record (or any value of one) as JSON, the one way outputs and the errors file write it.

    Numbers a float cannot hold (:class:`JsonNumber`, finite decimals) are written as the
    numbers they are; datetimes in ISO 8601; bytes in base64; other values as their ``str``.
    ``json`` has no hook for raw number text, so such a number goes through as a placeholder
    string holding a random nonce, replaced afterwards: no string of the user's can match it."""
    nonce = ""

    def default(obj: object) -> object:
        nonlocal nonce
        if isinstance(obj, JsonNumber) or (isinstance(obj, Decimal) and obj.is_finite()):
            nonce = nonce or secrets.token_hex(16)
            return f"{nonce}:{obj}:{nonce}"
        return plain_value(obj)

    text = json.dumps(value, ensure_ascii=False, default=default)
    if not nonce:
        return text
    return re.sub(f'"{nonce}:([-+0-9.eE]+):{nonce}"', r"\1", text)


def plain_value(obj: object) -> object:
    """A value JSON has no type for, as text: ISO 8601 times, base64 bytes, else ``str``."""
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    return str(obj)
