# HTTP client cases run by the MicroPython Unix port against the scripted fake server in
# tests/device/test_units.py (port in PARK_FAKE_PORT). Output as in units.py.
import http
import os
import sys
import time

from casesrun import expect, main

_PORT = int(os.getenv("PARK_FAKE_PORT"))


def conn(timeout=2):
    return http.Conn(False, "127.0.0.1", _PORT, 256, 512, timeout)


def get(c, path, body=b""):
    c.body[: len(body)] = body
    return c.request(b"POST", path, len(body), b"text/plain")


def stats():
    # (connections, requests) the fake server has seen, from its /stats answer on a connection
    # of its own, which it does not count.
    s = http.Conn(False, "127.0.0.1", _PORT, 16, 64, 2)
    get(s, "/stats")
    s.close()
    connections, requests = bytes(s.resp).split()
    return int(connections), int(requests)


def since(before):
    # Connections and requests the server saw since `before` (a stats() result).
    now = stats()
    return now[0] - before[0], now[1] - before[1]


def refused(c, path):
    try:
        get(c, path)
    except http.HTTPError as e:
        return e
    raise AssertionError("no HTTPError for " + path)


def test_content_length_and_date():
    c = conn()
    expect(get(c, "/cl", b"hello") == 200, "status")
    expect(bytes(c.resp) == b"echo:hello", "body")
    expect(c.date == 784111777, "Date header parsed")


def test_chunked_body_with_extensions_and_trailers():
    before = stats()
    c = conn()
    get(c, "/chunked")
    expect(bytes(c.resp) == b"Wikipedia in\r\n\r\nchunks.", "chunks joined")
    get(c, "/cl", b"x")
    expect(bytes(c.resp) == b"echo:x" and since(before)[0] == 1, "connection still in sync")


def test_keep_alive_reuses_one_connection():
    before = stats()
    c = conn()
    for i in range(5):
        get(c, "/cl", b"%d" % i)
    expect(since(before) == (1, 5), "one TCP connection for five requests")


def test_connection_close_reconnects():
    before = stats()
    c = conn()
    get(c, "/close")
    get(c, "/cl")
    expect(since(before)[0] == 2, "reconnected after Connection: close")


def test_server_closing_idle_connection_is_survived():
    before = stats()
    c = conn()
    get(c, "/drop-after")  # the server closes right after this response, without saying so
    time.sleep_ms(50)
    expect(get(c, "/cl", b"again") == 200 and bytes(c.resp) == b"echo:again", "resent once")
    expect(since(before)[0] == 2, "stale connection replaced")


def test_retry_after_and_errors():
    before = stats()
    c = conn()
    e = refused(c, "/429")
    expect(e.status == 429 and e.retry_after == 7, "Retry-After seconds")
    e = refused(c, "/503-date")
    expect(e.status == 503 and e.retry_after == 30, "Retry-After as HTTP-date")
    e = refused(c, "/401-bearer")
    expect(e.status == 401 and e.error == "invalid_token", "RFC 6750 error from WWW-Authenticate")
    e = refused(c, "/401-json")
    expect(e.status == 401 and e.error == "invalid_client", "RFC 6749 error from the body")
    e = refused(c, "/500-html")
    expect(e.status == 500 and e.error is None, "non-JSON error body")
    expect(since(before)[0] == 1, "errors keep the connection")


def test_oversized_body_and_header_line():
    before = stats()
    c = conn()
    get(c, "/big")
    # The whole buffer takes a response (the request is sent by then): cut off beyond it.
    expect(len(c.resp) == len(c.buf) and bytes(c.resp[:4]) == b"AAAA", "truncated to the buffer")
    get(c, "/long-header")
    expect(bytes(c.resp) == b"ok", "overlong header line skipped")
    expect(get(c, "/cl") == 200 and since(before)[0] == 1, "still in sync")


def test_long_token_head_and_a_shared_buffer():
    # An external issuer's access token (RS256: about 1 KB, up to 2 KB) makes the head longer
    # than the room in front of the body: it goes in a write of its own. A second connection
    # (the token endpoint on another origin) shares the first one's buffer.
    before = stats()
    c = conn()
    other = http.Conn(False, "127.0.0.1", _PORT, 0, 0, 2, None, c.buf)
    expect(other.buf is c.buf, "one buffer")
    for n, auth in ((0, b"Bearer " + b"t" * 2048), (5, b"Bearer " + b"u" * 2048)):
        c.body[:n] = b"hello"[:n]
        c.request(b"POST", "/echo", n, b"text/plain", auth)
        expect(bytes(c.resp) == b"echo:" + b"hello"[:n], "sent whole: %s" % bytes(c.resp))
    other.body[:3] = b"abc"
    other.request(b"POST", "/echo", 3, b"text/plain", b"Bearer " + b"v" * 1500)
    expect(bytes(other.resp) == b"echo:abc" and since(before) == (2, 3), "in sync")


def test_stall_mid_response_times_out():
    c = conn(timeout=0.4)
    t0 = time.ticks_ms()
    try:
        get(c, "/stall")
        raise AssertionError("no timeout")
    except OSError:
        pass
    took = time.ticks_diff(time.ticks_ms(), t0)
    expect(took < 2000, "gave up after %d ms" % took)
    expect(get(c, "/cl") == 200, "recovers on a new connection")


def test_refused_connection_is_oserror():
    c = http.Conn(False, "127.0.0.1", 1, 64, 64, 1)
    try:
        get(c, "/")
        raise AssertionError("connected to port 1?")
    except OSError:
        pass


main(globals(), sys.argv[1:])
