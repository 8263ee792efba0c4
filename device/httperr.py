# Cold: the parts of http.py that only unusual responses need: for a refusal (a non-2xx
# response) the OAuth error code and the Retry-After delay, and the decoder for a chunked body.
# http.py imports it for one call and drops it again, so on a healthy board this code does not
# occupy the heap.
from http import HTTPError, _read, _readline


def refusal(status, retry, www, date, body):
    # The HTTPError for a response: `error` from WWW-Authenticate (RFC 6750 §3) or else from a
    # JSON body (RFC 6749 §5.2), `retry_after` in seconds from Retry-After.
    error = _bearer_error(www) if www else None
    if error is None and body and body[0] == 0x7B:  # "{"
        import json

        try:
            error = json.loads(bytes(body)).get("error")
        except (ValueError, AttributeError):
            pass
    return HTTPError(status, error, None if retry is None else _retry_after(retry, date))


def _retry_after(value, date):
    # RFC 9110 §10.2.3: delay-seconds or an HTTP-date (relative to the response's Date).
    if value.isdigit():
        return int(value)
    from clock import parse_http_date

    at = parse_http_date(value)
    if at is None or date is None:
        return None
    return max(0, at - date)


def _bearer_error(value):
    # 'Bearer error="invalid_token", error_description="..."' -> "invalid_token"
    i = value.find('error="')
    if i < 0:
        return None
    j = value.find('"', i + 7)
    return value[i + 7 : j] if j > 0 else None


def chunked(s, buf, deadline):
    # RFC 9112 §7.1: size line, data, CRLF; a zero size ends it, then trailers. Returns the body
    # length in buf.
    n = 0
    while True:
        size = int(bytes(_readline(s, deadline)).split(b";")[0].strip(), 16)
        if size == 0:
            break
        n = _read(s, buf, n, size, deadline)
        _readline(s, deadline)
    while _readline(s, deadline) not in (b"\r\n", b"\n"):
        pass
    return n
