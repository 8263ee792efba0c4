# A small HTTP/1.1 client (RFC 9112) for the agent: one persistent connection per origin, a
# timeout on every step, DNS resolved once, Content-Length and chunked bodies, and only the headers
# the agent needs (Date, Retry-After, WWW-Authenticate, Connection). One buffer, allocated once,
# serves both directions: the caller writes the request body into `conn.body` in place, and the
# response body lands in `conn.resp`, over the request, which is sent whole before any of the
# response is read. The transport raises OSError only; a non-2xx status raises HTTPError.
import socket
import time

from micropython import const

import cold

_ROOM = const(1024)  # head room in front of the body for the request line and headers
_LONG = const(640)  # an Authorization value longer than this is written on its own
_LINE = const(200)  # header lines longer than this are truncated (we need none of the rest)
_DNS_RETRY = const(3)  # consecutive connect failures before the cached address is resolved again


class HTTPError(Exception):
    # Status plus what a retry policy needs: `error` is the OAuth/Bearer error code from the
    # WWW-Authenticate header (RFC 6750 §3) or the JSON body (RFC 6749 §5.2), `retry_after` seconds.
    def __init__(self, status, error=None, retry_after=None):
        super().__init__(status)
        self.status = status
        self.error = error
        self.retry_after = retry_after


class Conn:
    def __init__(self, tls, host, port, body_cap, in_cap, timeout_s, ca_path=None):
        # The buffer holds at least in_cap bytes of response (a longer body is cut off).
        self.tls, self.host, self.port = tls, host, port
        self.timeout = timeout_s
        self.ca_path = ca_path
        self.buf = bytearray(max(_ROOM + body_cap, in_cap))
        self.body = memoryview(self.buf)[_ROOM:]
        self.resp = self.body[:0]
        self._sock = None
        self._addr = None
        self._fails = 0
        self.date = None  # server's Date of the last response, epoch seconds
        self.stream = None  # ota.py's: stream(sock, status, length, deadline) takes a 2xx body

    def origin(self, tls, host, port):
        # Point this connection at another origin (with the same CA): the token endpoint of an
        # external authorization server for one request a day, and back. One connection and one
        # buffer serve both; the kept-alive socket and the resolved address go.
        self.close()
        self.tls, self.host, self.port = tls, host, port
        self._addr = None

    def close(self):
        s, self._sock = self._sock, None
        if s:
            try:
                s.close()
            except OSError:
                pass

    def _connect(self):
        if self._addr is None or self._fails >= _DNS_RETRY:
            # getaddrinfo blocks without a timeout on most ports: do it once, not per request.
            ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
            self._addr = (ai[0], ai[-1])
            self._fails = 0
        s = socket.socket(self._addr[0], socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._addr[1])
            if self.tls:
                import tlsctx

                # The handshake runs inside wrap_socket, bounded by the socket timeout above.
                s = tlsctx.context(self.ca_path).wrap_socket(s, server_hostname=self.host)
        except OSError:
            s.close()
            self._fails += 1
            raise
        except ValueError as e:
            # MicroPython's ssl reports a refused certificate as ValueError; this layer raises
            # OSError only, so the agent's retry path sees one error type.
            s.close()
            raise OSError("TLS: " + str(e).strip())
        self._fails = 0
        self._sock = s

    def _stale(self):
        # An idle keep-alive connection that turned readable was closed (or garbled) by the server.
        import select

        p = select.poll()
        p.register(self._sock, select.POLLIN)
        return bool(p.poll(0))

    def request(self, method, path, nbody, ctype=None, auth=None):
        # Send method+path with the first nbody bytes of self.body; returns the status (2xx) with
        # the body in self.resp, raises HTTPError (other statuses) or OSError (transport).
        reused = self._sock is not None
        if reused and self._stale():
            self.close()
            reused = False
        for attempt in (0, 1):
            if self._sock is None:
                self._connect()
            got = [False]
            try:
                return self._exchange(method, path, nbody, ctype, auth, got)
            except OSError:
                self.close()
                # A kept-alive connection may die between our poll and our write; resend once if
                # the server said nothing (safe: the counts API deduplicates by seq).
                if attempt or not reused or got[0]:
                    raise

    def _exchange(self, method, path, nbody, ctype, auth, got):
        s = self._sock
        deadline = time.ticks_add(time.ticks_ms(), int(self.timeout * 3000))
        # Few, whole format strings: each bytes constant of a module loaded for good is an object
        # in the heap (str or bytes arguments both format as their text with %s).
        host = self.host
        if self.port != (443 if self.tls else 80):
            host = "%s:%d" % (host, self.port)
        head = b"%s %s HTTP/1.1\r\nHost: %s" % (method, path, host)
        if auth and len(auth) > _LONG:
            # An external issuer's access token (an RS256 JWT is about 1 KB, up to 2 KB): the
            # head up to it and the token go in writes of their own, with no copy of the token.
            s.write(head + b"\r\nAuthorization: ")
            s.write(auth)
            head = b""
        elif auth:
            head += b"\r\nAuthorization: " + auth
        if nbody:
            head += b"\r\nContent-Type: %s\r\nContent-Length: %d" % (ctype, nbody)
        head += b"\r\n\r\n"
        n = len(head)
        if n > _ROOM:
            raise OSError("request head too long")
        # The head goes right in front of the body, so the request leaves in one write: one TLS
        # record, one TCP segment.
        out = memoryview(self.buf)
        out[_ROOM - n : _ROOM] = head
        s.write(out[_ROOM - n : _ROOM + nbody])

        line = _readline(s, deadline)
        got[0] = True
        if not line.startswith(b"HTTP/1.") or len(line) < 12:
            raise OSError("bad status line")
        status = int(line[9:12])
        length, chunked, keep = -1, False, line[7] != 48  # HTTP/1.0: no keep-alive
        date = retry = www = None
        while True:
            line = _readline(s, deadline)
            if not line.strip():
                break  # the empty line that ends the head
            i = line.find(b":")
            if i < 0:
                continue
            name = bytes(line[:i]).lower()
            value = line[i + 1 :].strip().decode()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == b"connection":
                keep = value.lower() != "close"
            elif name == b"date":
                from clock import parse_http_date

                date = parse_http_date(value)
            elif name == b"retry-after":
                retry = value
            elif name == b"www-authenticate":
                www = value
        self.date = date  # per response: a stale Date must not be learned again later
        n = self._body(s, status, length, chunked, deadline)
        self.resp = memoryview(self.buf)[:n]
        if not keep or (length < 0 and not chunked):
            self.close()
        if 200 <= status < 300:
            return status
        # A refusal: its details are read by httperr.py (cold: loaded for that, dropped again).
        import httperr

        try:
            error, retry = httperr.refusal(retry, www, date, self.resp)
        finally:
            cold.drop(httperr)
        raise HTTPError(status, error, retry)

    def _body(self, s, status, length, chunked, deadline):
        # (The agent sends no HEAD request: only these statuses come without a body.)
        if status in (204, 304) or 100 <= status < 200:
            return 0
        if self.stream and 200 <= status < 300:
            return self.stream(s, status, length, deadline)  # a download, straight to flash
        if not chunked:
            return _read(s, self.buf, 0, length, deadline)
        # Rare: the service's small JSON replies carry Content-Length; the decoder for chunked
        # ones is in httperr.py, loaded for it and dropped again.
        import httperr

        try:
            return httperr.chunked(s, self.buf, deadline, _readline, _read)
        finally:
            cold.drop(httperr)


def check(deadline):
    if time.ticks_diff(deadline, time.ticks_ms()) < 0:
        raise OSError(110)  # ETIMEDOUT: a server dripping bytes still gets cut off


def _readline(s, deadline):
    check(deadline)
    line = s.readline(_LINE)
    if not line:
        raise OSError("connection closed")
    if line[-1] != 10:
        # Overlong line: keep its start (the header name), skip the rest.
        while True:
            check(deadline)
            more = s.readline(_LINE)
            if not more:
                raise OSError("connection closed")
            if more[-1] == 10:
                break
    return line


def _read(s, buf, n, length, deadline):
    # Read `length` bytes (-1: until the peer closes) into buf[n:], discarding what does not fit.
    mv = memoryview(buf)
    left = length
    while left != 0:
        check(deadline)
        if n < len(buf):
            want = len(buf) - n if left < 0 else min(left, len(buf) - n)
            got = s.readinto(mv[n : n + want])
            n += got or 0
        else:
            got = len(s.read(min(left, 256) if left > 0 else 256))
        if not got:
            if left < 0:
                return n
            raise OSError("connection closed")
        if left > 0:
            left -= got
    return n
