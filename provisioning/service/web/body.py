"""Reading a request body: with a bound (an oversized body is refused before it is read whole),
and as strict JSON."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

from provisioning.common.text import is_clean_text
from provisioning.service.auth.errors import InvalidRequest, PayloadTooLarge


async def read_body(content_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read a request body, refusing (413) one over `limit` bytes before reading it whole: at
    once when `Content-Length` says so, else as soon as the chunks pass it."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise InvalidRequest("bad Content-Length") from None
        if declared > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
    return bytes(body)


class MalformedJson(ValueError):
    """A body that is not strict JSON (`strict_json`); its message says why, never echoing it."""


class UncleanText(MalformedJson):
    """JSON whose text is no valid Unicode or holds NUL: well-formed, but a value no field takes
    (422 where the framework's schema errors are 422)."""


# Deeper than any body of this API; far below Python's recursion limit.
MAX_JSON_DEPTH = 32
_INT64 = 2**63


def _refuse_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not JSON (RFC 8259 §6)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a float that overflows is no number either
        raise MalformedJson("a number is out of range")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # RFC 8259 §4: names SHOULD be unique; which one wins is undefined, so neither does.
        raise MalformedJson("a JSON object repeats a key")
    return obj


def strict_json(body: bytes) -> Any:
    """Parse a request body as strict JSON, the one rule for every JSON body the service takes
    through the framework (the admin API; the token endpoint's JSON form): UTF-8, no repeated
    key, no NaN or Infinity or overflowing number, integers within 64 bits, nesting at most
    MAX_JSON_DEPTH deep, and no lone surrogate or NUL in any string or key (text.py).
    Raises `MalformedJson` (`UncleanText` for the last rule)."""
    try:
        text = body.decode("utf-8")
        loaded = json.loads(
            text,
            object_pairs_hook=_unique,
            parse_constant=_refuse_constant,
            parse_float=_finite,
        )
    except MalformedJson:
        raise
    except RecursionError:  # `[[[[...`: refused before the walk below
        raise MalformedJson("JSON nested too deep") from None
    except ValueError:  # also UnicodeDecodeError, and an integer of over 4300 digits
        raise MalformedJson("body is not valid JSON") from None
    # Iterative, so no depth can exhaust the stack here.
    stack: list[tuple[Any, int]] = [(loaded, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise MalformedJson(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            for key, item in value.items():
                if not is_clean_text(key):
                    raise UncleanText("text must be valid Unicode without NUL")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                raise MalformedJson(f"JSON nested deeper than {MAX_JSON_DEPTH}")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if not is_clean_text(value):
                raise UncleanText("text must be valid Unicode without NUL")
        elif type(value) is int and not -_INT64 <= value < _INT64:
            raise MalformedJson("an integer is out of range (64 bits)")
    return loaded
