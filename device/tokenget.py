# The rarely run half of token.py: credentials at boot, the token cache's load, and the token
# request itself (about once a day) with the uplink's handling of its outcome. Each of those
# loads this module through cold.py, which drops it from sys.modules afterwards, so its code
# does not occupy the heap in between.
import binascii
import json
import time
from micropython import const

import clock
import flash
import http

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


def setup(t, client_id, secret, audience):
    # RFC 6749 §2.3.1: id and secret form-encoded, then HTTP Basic; the secret is not kept.
    cred = form_quote(client_id) + b":" + form_quote(secret)
    t._basic = b"Basic " + binascii.b2a_base64(cred)[:-1]
    t._form = b"grant_type=client_credentials&audience=" + form_quote(audience)
    raw = flash.read(t.cache)
    if not raw:
        return
    try:
        d = json.loads(raw)
        t.value = b"Bearer " + d["access_token"].encode()
        t.exp = d.get("exp")
        t.lifetime = d.get("expires_in") or 0
    except (ValueError, KeyError, TypeError, AttributeError):
        t.drop()  # a garbled cache is just a missing one


def fetch(t):
    # One token request; HTTPError/OSError/ValueError propagate to the agent's backoff.
    c = t.conn
    n = len(t._form)
    c.body[:n] = t._form
    c.request(b"POST", t.path, n, _FORM, t._basic)
    d = json.loads(bytes(c.resp))
    tok = d.get("access_token")
    if not isinstance(tok, str) or str(d.get("token_type", "")).lower() != "bearer":
        raise ValueError("token response without a bearer access_token")
    life = d.get("expires_in")
    life = life if isinstance(life, int) and life > 0 else 0
    date = c.date or clock.now()
    t.value = b"Bearer " + tok.encode()  # the only copy kept: ready for the header
    t.lifetime = life
    t.exp = date + life if (date and life) else None
    t._due = None
    if life:
        ms = min(life * 900, _MAX_DUE_MS)
        t._due = time.ticks_add(time.ticks_ms(), ms)
    d = {"access_token": tok, "expires_in": life, "exp": t.exp}
    flash.write_atomic(t.cache, json.dumps(d).encode())
    return life


def get_token(up):
    # Uplink.get_token: fetch a token; on failure log it and set the uplink's backoff (False).
    try:
        life = fetch(up.token)
    except http.HTTPError as e:
        up._heard(up.token.conn)
        why = "token refused: %d %s" % (e.status, e.error or "")
        if e.status in (429, 503):
            up.fail(why, e.retry_after)
        else:
            # invalid_client: wrong secret or a disabled board; a long cap, never hammering.
            up.fail(why, None, e.status in (400, 401, 403))
        return False
    except (OSError, ValueError) as e:
        up.fail("token request failed: %r" % e, offline=True)
        return False
    up._heard(up.token.conn)
    up.auth_retry[2] = 0
    up.log("token fetched, lifetime %ds" % life)
    return True
