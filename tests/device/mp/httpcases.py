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


def test_long_token_head_and_another_origin():
    # An external issuer's access token (RS256: about 1 KB, up to 2 KB) makes the head longer
    # than the room in front of the body: it goes in a write of its own. The same connection is
    # pointed at another origin (the token endpoint) and back: a new socket each time.
    before = stats()
    c = conn()
    for n, auth in ((0, b"Bearer " + b"t" * 2048), (5, b"Bearer " + b"u" * 2048)):
        c.body[:n] = b"hello"[:n]
        c.request(b"POST", "/echo", n, b"text/plain", auth)
        expect(bytes(c.resp) == b"echo:" + b"hello"[:n], "sent whole: %s" % bytes(c.resp))
    c.origin(False, "localhost", _PORT)
    get(c, "/echo", b"abc")
    expect(bytes(c.resp) == b"echo:abc" and c.host == "localhost", "the other origin")
    c.origin(False, "127.0.0.1", _PORT)
    get(c, "/echo", b"de")
    expect(
        bytes(c.resp) == b"echo:de" and since(before) == (3, 4), "and back: %s" % (since(before),)
    )


def test_token_request_dialects_on_the_wire():
    # What the token endpoint receives in each dialect (the fake answers with it as the token).
    import json

    import config
    import tokenget

    cfg = {
        "device_id": "dev_1",
        "client_secret": "s3cret",
        "token_url": "http://127.0.0.1:%d/token-echo" % _PORT,
        "audience": "https://api.example/",
        "ingest_url": "http://localhost:%d" % _PORT,
        "lot": "L1",
        "interval_s": 60,
        "sensor": {"kind": "file", "path": "cars.txt"},
        "wifi": {"ssid": "lot"},
        "token_body": "json",
        "token_scope": "counts:write",
    }
    c = http.Conn(False, "localhost", _PORT, 256, 2304, 2)  # the ingest origin
    url = config.validate(cfg)["token_url"]
    basic, form = tokenget.body(cfg)
    seen = tokenget.request(c, url, form, basic, "tok.json")[0].decode()
    expect(seen.startswith("Bearer POST /token-echo HTTP/1.1\r\n"), seen)
    expect("Content-Type: application/json\r\n" in seen and "Authorization" not in seen, seen)
    got = json.loads(seen.split("\r\n\r\n", 1)[1])
    want = {"grant_type": "client_credentials", "client_id": "dev_1", "client_secret": "s3cret"}
    want.update({"audience": "https://api.example/", "scope": "counts:write"})
    expect(got == want, "Auth0's JSON body: %s" % got)
    expect(c.host == "localhost", "back on the ingest origin after the request")
    cfg["token_body"] = "form"
    basic, form = tokenget.body(cfg)
    seen = tokenget.request(c, url, form, basic, "tok.json")[0].decode()
    expect("Authorization: Basic ZGV2XzE6czNjcmV0\r\n" in seen, "RFC 6749 §2.3.1: %s" % seen)
    expect("Content-Type: application/x-www-form-urlencoded\r\n" in seen, seen)
    expect(
        seen.endswith(
            "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example%2F"
            "&scope=counts%3Awrite"
        ),
        seen,
    )


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
