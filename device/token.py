# Access token by the OAuth 2.0 client credentials grant (RFC 6749 §4.4) with HTTP Basic client
# authentication (§2.3.1: id and secret are form-encoded before base64). Cached in RAM and in
# token.json (replaced atomically) with its expiry by the server's clock, reused across reboots,
# refreshed in the last tenth of its lifetime. Without a trustworthy clock a cached token is used
# optimistically and a 401 invalid_token decides (the agent then drops it and fetches one).
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


class Token:
    def __init__(self, conn, path, client_id, secret, audience, cache="token.json"):
        self.conn = conn
        self.path = path
        self.cache = cache
        cred = form_quote(client_id) + b":" + form_quote(secret)
        self._basic = b"Basic " + binascii.b2a_base64(cred)[:-1]
        self._form = b"grant_type=client_credentials&audience=" + form_quote(audience)
        self.value = None  # b"Bearer ..." ready for the Authorization header
        self.exp = None  # expiry in epoch seconds by the server's clock, when known
        self.lifetime = 0
        self._due = None  # ticks_ms at which to refresh, for boards without a clock
        self._load()

    def _load(self):
        raw = flash.read(self.cache)
        if not raw:
            return
        try:
            d = json.loads(raw)
            self.value = b"Bearer " + d["access_token"].encode()
            self.exp = d.get("exp")
            self.lifetime = d.get("expires_in") or 0
        except (ValueError, KeyError, TypeError, AttributeError):
            self.drop()  # a garbled cache is just a missing one

    def due(self):
        # True when a (new) token should be fetched before the next upload.
        if self.value is None:
            return True
        now = clock.now()
        if self.exp is not None and now is not None:
            # +1: a Date header truncates to the second, so the learned clock may run up to 1 s
            # behind, while exp (issue Date + expires_in) is never late.
            return now + 1 >= self.exp - self.lifetime / 10
        if self._due is not None:
            return time.ticks_diff(time.ticks_ms(), self._due) >= 0
        return False  # no clock yet: use it optimistically, a 401 will tell

    def drop(self):
        self.value = self.exp = self._due = None
        flash.remove(self.cache)

    def fetch(self):
        # One token request; HTTPError/OSError/ValueError propagate to the agent's backoff.
        c = self.conn
        n = len(self._form)
        c.body[:n] = self._form
        c.request(b"POST", self.path, n, _FORM, self._basic)
        d = json.loads(bytes(c.resp))
        tok = d.get("access_token")
        if not isinstance(tok, str) or str(d.get("token_type", "")).lower() != "bearer":
            raise ValueError("token response without a bearer access_token")
        life = d.get("expires_in")
        life = life if isinstance(life, int) and life > 0 else 0
        date = c.date or clock.now()
        self.value = b"Bearer " + tok.encode()
        self.lifetime = life
        self.exp = date + life if (date and life) else None
        self._due = None
        if life:
            ms = min(life * 900, _MAX_DUE_MS)
            self._due = time.ticks_add(time.ticks_ms(), ms)
        d = {"access_token": tok, "expires_in": life, "exp": self.exp}
        flash.write_atomic(self.cache, json.dumps(d).encode())
        return life
