# Cold (token.py loads it for each use, then drops it): the rarely run half of Token. The request's
# credentials and body at boot, token.json's load and save, and the token request itself (about
# once a day). Functions take values and return values; the Token object assigns them.
#
# The request's dialect comes from the config (device/README.md): token_body "form" (RFC 6749
# §4.4.2 with HTTP Basic client authentication, §2.3.1) or "json" (Auth0's documented body,
# "Call Your API Using the Client Credentials Flow": grant_type, client_id, client_secret and
# audience in one JSON object); token_audience_param names the parameter that carries the
# audience ("audience", "resource" of RFC 8707, or none); token_scope is sent as "scope" when
# set (RFC 6749 §3.3). Built as bytes throughout: short str constants are qstrs for good.
import binascii
import json
import time

from micropython import const

import clock
import flash

_FORM = b"application/x-www-form-urlencoded"
_JSON = b"application/json"
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


def body(c):
    # (Authorization header value or None, request body) for the config c.
    cid, secret, aud = c["device_id"], c["client_secret"], c["audience"]
    param, scope = c["token_audience_param"], c["token_scope"]
    if c["token_body"] == "json":
        d = json.dumps
        out = b'{"grant_type":"client_credentials","client_id":%s,"client_secret":%s' % (
            d(cid),
            d(secret),
        )
        if param:
            out += b',"%s":%s' % (param, d(aud))
        if scope:
            out += b',"scope":%s' % d(scope)
        return None, out + b"}"
    # RFC 6749 §2.3.1: id and secret form-encoded, then HTTP Basic.
    cred = form_quote(cid) + b":" + form_quote(secret)
    out = b"grant_type=client_credentials"
    if param:
        out += b"&%s=%s" % (param, form_quote(aud))
    if scope:
        out += b"&scope=" + form_quote(scope)
    return b"Basic " + binascii.b2a_base64(cred)[:-1], out


def setup(c, cache):
    # (Authorization header value or None, request body) + the cached token (b"Bearer ...",
    # exp, expires_in) from the cache file, or (None, None, 0).
    creds = body(c)
    raw = flash.read(cache)
    if raw:
        try:
            d = json.loads(raw)
            tok = b"Bearer " + d["access_token"].encode()
            return creds + (tok, d.get("exp"), d.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            flash.remove(cache)  # a garbled cache is just a missing one
    return creds + (None, None, 0)


def request(conn, url, form, basic, cache):
    # One token request, its answer saved to the cache file: (b"Bearer ...", expires_in or 0,
    # exp or None, ticks_ms to refresh at or None). HTTPError/OSError/ValueError propagate.
    # url: the token endpoint's (tls, host, port, path); on another origin than conn's (an
    # external authorization server) conn is pointed there for this request only.
    origin, path = url[:3], url[3]
    here = (conn.tls, conn.host, conn.port)
    if origin != here:
        conn.origin(*origin)
    try:
        n = len(form)
        conn.body[:n] = form
        conn.request(b"POST", path, n, _FORM if basic else _JSON, basic)
    finally:
        if origin != here:
            conn.origin(*here)
    # Parsed in place, and the cache written as str: a 2 KB token must not need more copies of
    # itself than it has to (each needs a free block that long).
    d = json.loads(conn.resp)
    tok = d.get("access_token")
    if not isinstance(tok, str) or str(d.get("token_type", "")).lower() != "bearer":
        raise ValueError("token response without a bearer access_token")
    life = d.get("expires_in")
    life = life if isinstance(life, int) and life > 0 else 0
    date = conn.date or clock.now()
    exp = date + life if (date and life) else None
    d = {"access_token": tok, "expires_in": life, "exp": exp}
    flash.write_atomic(cache, json.dumps(d))
    due = time.ticks_add(time.ticks_ms(), min(life * 900, _MAX_DUE_MS)) if life else None
    return b"Bearer " + tok.encode(), life, exp, due  # the header value: the only copy kept
