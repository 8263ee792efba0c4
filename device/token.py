# Access token by the OAuth 2.0 client credentials grant (RFC 6749 §4.4), in the dialect the
# config names (tokenget.py): a form body with HTTP Basic client authentication (§2.3.1), or a
# JSON body with the credentials in it (as Auth0 documents). Cached in RAM and in
# token.json (replaced atomically) with its expiry by the server's clock, reused across reboots,
# refreshed in the last tenth of its lifetime. Without a trustworthy clock a cached token is used
# optimistically and a 401 invalid_token decides (the uplink then drops it and fetches one).
# This class holds the token; the rarely run work (credentials, the cache file, the request) is
# in tokenget.py, loaded for it and dropped again. When to renew and what to do when a request
# fails is the retry supervisor's (Uplink.get_token and Uplink.failed in uplink.py).
import time

import clock
import cold
import flash


class Token:
    def __init__(self, conn, c, cache="token.json"):
        # conn: the connection to the ingest API, pointed at the token endpoint's origin for a
        # request when that is another one; c: the config (token_url split, device_id,
        # client_secret, audience and the token_* dialect keys).
        self.conn = conn
        self.url = c["token_url"]  # split: (tls, host, port, path)
        self.cache = cache
        self._due = None  # ticks_ms at which to refresh, for boards without a clock
        import tokenget

        # _basic, _form: the request's Basic credentials (None when they are in the body) and
        # its body (the secret is not kept otherwise); value: b"Bearer ..." ready for the
        # Authorization header, or None; exp: expiry in epoch seconds by the server's clock,
        # when known. From token.json, when it holds a token.
        self._basic, self._form, self.value, self.exp, self.lifetime = tokenget.setup(c, cache)
        cold.drop(tokenget)

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

    def fetch(self):
        # One token request; returns its lifetime (s). HTTPError, OSError and ValueError reach
        # the caller (Uplink.get_token) with this token unchanged.
        import tokenget

        try:
            self.value, self.lifetime, self.exp, self._due = tokenget.request(
                self.conn, self.url, self._form, self._basic, self.cache
            )
        finally:
            cold.drop(tokenget)
        return self.lifetime

    def drop(self):
        self.value = self.exp = self._due = None
        flash.remove(self.cache)
