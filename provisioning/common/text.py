"""The one rule for text taken from a request: valid Unicode without NUL.

A JSON string may carry a lone surrogate (`"\\ud800"`), which Python decodes into a `str` that
cannot be encoded back to UTF-8 (a database driver then raises), and NUL is refused by
PostgreSQL in text columns and truncates C strings elsewhere. Both are refused where text enters
the service (the token endpoint's parameters, path and query, admin API bodies), with a 4xx.
"""

from __future__ import annotations

# The same rule for the OpenAPI document (ECMA-262 has no way to say "valid Unicode").
NO_NUL_PATTERN = r"^[^\x00]*\Z"


def is_clean_text(value: str) -> bool:
    """True if `value` encodes as UTF-8 (no lone surrogates) and holds no NUL character."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
