"""Reading a request body with a bound: an oversized body is refused before it is read whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
