# Cold: the parts of http.py that only unusual responses need: for a refusal (a non-2xx
# response) the OAuth error code and the Retry-After delay, and the decoder for a chunked body.
# http.py imports it for one call and drops it again, so on a healthy board this code does not
# occupy the heap. It imports nothing of http.py: it returns plain values (http.py raises its
# HTTPError with them), and the chunked decoder is handed http.py's line and body readers.


def refusal(retry, www, date, body):
    # (error, retry_after) of a refusal: `error` from WWW-Authenticate (RFC 6750 §3) or else from
    # a JSON body (RFC 6749 §5.2), `retry_after` in seconds from Retry-After. One function: each
    # name of a loaded module is a qstr for good.
    error = None
    if www:
        # 'Bearer error="invalid_token", error_description="..."' -> "invalid_token"
        i = www.find('error="')
        j = www.find('"', i + 7)
        error = www[i + 7 : j] if 0 <= i < j else None
    if error is None and body and body[0] == 0x7B:  # "{"
        import json

        try:
            error = json.loads(bytes(body)).get("error")
        except (ValueError, AttributeError):
            pass
    if retry is None or retry.isdigit():
        return error, retry and int(retry)
    # RFC 9110 §10.2.3: delay-seconds (above) or an HTTP-date, relative to the response's Date.
    from clock import parse_http_date

    at = parse_http_date(retry)
    return error, None if at is None or date is None else max(0, at - date)


def chunked(s, buf, deadline, readline, read):
    # RFC 9112 §7.1: size line, data, CRLF; a zero size ends it, then trailers. Returns the body
    # length in buf. readline(s, deadline) and read(s, buf, n, length, deadline): http.py's.
    n = 0
    while True:
        size = int(bytes(readline(s, deadline)).split(b";")[0].strip(), 16)
        if size == 0:
            break
        n = read(s, buf, n, size, deadline)
        readline(s, deadline)
    while readline(s, deadline) not in (b"\r\n", b"\n"):
        pass
    return n
