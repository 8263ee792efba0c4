# Cold (token.py loads it for each use, then drops it): the rarely run half of Token. Basic
# credentials at boot, token.json's load and save, and the token request itself (about once a
# day). Functions take values and return values; the Token object assigns them.
import binascii
import json
import time

from micropython import const

import clock
import flash

_FORM = b"application/x-www-form-urlencoded"
_MAX_DUE_MS = const(0x1FFFFFFF)  # keep ticks arithmetic inside ticks_diff's range


def form_quote(s):
    # application/x-www-form-urlencoded byte serializer (WHATWG URL §5.2), bytes in and out.
    # Built as bytes, not with chr(): chr() interns every distinct character as a qstr, and
    # qstrs are never freed (the secret's characters alone grew the qstr pool by 3.6 KB).
    out = bytearray()
    for ch in s.encode():
        if 48 <= ch <= 57 or 65 <= ch <= 90 or 97 <= ch <= 122 or ch in b"-._*":
            out.append(ch)
        elif ch == 32:
            out.append(43)  # "+"
        else:
            out.extend(b"%%%02X" % ch)
    return bytes(out)


def setup(client_id, secret, audience, cache):
    # (Authorization header value, request body) + the cached token (b"Bearer ...", exp,
    # expires_in) from the cache file, or (None, None, 0).
    # RFC 6749 §2.3.1: id and secret form-encoded, then HTTP Basic.
    cred = form_quote(client_id) + b":" + form_quote(secret)
    creds = (
        b"Basic " + binascii.b2a_base64(cred)[:-1],
        b"grant_type=client_credentials&audience=" + form_quote(audience),
    )
    raw = flash.read(cache)
    if raw:
        try:
            d = json.loads(raw)
            tok = b"Bearer " + d["access_token"].encode()
            return creds + (tok, d.get("exp"), d.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            flash.remove(cache)  # a garbled cache is just a missing one
    return creds + (None, None, 0)


def request(conn, path, form, basic, cache):
    # One token request, its answer saved to the cache file: (b"Bearer ...", expires_in or 0,
    # exp or None, ticks_ms to refresh at or None). HTTPError/OSError/ValueError propagate.
    n = len(form)
    conn.body[:n] = form
    conn.request(b"POST", path, n, _FORM, basic)
    d = json.loads(bytes(conn.resp))
    tok = d.get("access_token")
    if not isinstance(tok, str) or str(d.get("token_type", "")).lower() != "bearer":
        raise ValueError("token response without a bearer access_token")
    life = d.get("expires_in")
    life = life if isinstance(life, int) and life > 0 else 0
    date = conn.date or clock.now()
    exp = date + life if (date and life) else None
    d = {"access_token": tok, "expires_in": life, "exp": exp}
    flash.write_atomic(cache, json.dumps(d).encode())
    due = time.ticks_add(time.ticks_ms(), min(life * 900, _MAX_DUE_MS)) if life else None
    return b"Bearer " + tok.encode(), life, exp, due  # the header value: the only copy kept
