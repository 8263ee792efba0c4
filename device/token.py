# Access token by the OAuth 2.0 client credentials grant (RFC 6749 §4.4) with HTTP Basic client
# authentication (§2.3.1: id and secret are form-encoded before base64). Cached in RAM and in
# token.json (replaced atomically) with its expiry by the server's clock, reused across reboots,
# refreshed in the last tenth of its lifetime. Without a trustworthy clock a cached token is used
# optimistically and a 401 invalid_token decides (the agent then drops it and fetches one).
# This is the half every upload needs; tokenget.py, loaded only when needed, does the rest.
import time

import clock
import cold
import flash


class Token:
    def __init__(self, conn, path, client_id, secret, audience, cache="token.json"):
        self.conn = conn
        self.path = path
        self.cache = cache
        self.value = None  # b"Bearer ..." ready for the Authorization header
        self.exp = None  # expiry in epoch seconds by the server's clock, when known
        self.lifetime = 0
        self._due = None  # ticks_ms at which to refresh, for boards without a clock
        cold.run("tokenget", "setup", self, client_id, secret, audience)  # and token.json

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
