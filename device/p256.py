# Cold (loaded by ota.py for an update only, dropped after): ECDSA P-256 signature verification
# (ES256, RFC 7518 §3.4; the curve of SEC 2 §2.4.2 / FIPS 186-4 D.1.2.3) in pure MicroPython,
# which has no ECDSA of its own. Only verification, of public data, so constant time does not
# matter. Jacobian coordinates (no inversion per step; a = -3 doubling), and u1*G + u2*Q in one
# pass over the bits (Shamir's trick): 256 doublings and about 192 additions.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    1,
)
_INF = (0, 1, 0)


def _inv(a, m):
    # a^-1 mod m (m prime, a not 0 mod m): the extended Euclidean algorithm.
    lm, hm, low, high = 1, 0, a % m, m
    while low > 1:
        q = high // low
        lm, hm, low, high = hm - lm * q, lm, high - low * q, low
    return lm % m


def _dbl(pt):
    x, y, z = pt
    if not z or not y:
        return _INF
    p = _P
    zz = z * z % p
    a = 3 * (x - zz) * (x + zz) % p  # a = -3: 3x^2 + a*z^4 = 3(x - z^2)(x + z^2)
    yy = y * y % p
    s = 4 * x * yy % p
    x3 = (a * a - 2 * s) % p
    return x3, (a * (s - x3) - 8 * yy * yy) % p, 2 * y * z % p


def _add(p1, p2):
    if not p1[2]:
        return p2
    if not p2[2]:
        return p1
    p = _P
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    zz1 = z1 * z1 % p
    zz2 = z2 * z2 % p
    u1 = x1 * zz2 % p
    s1 = y1 * z2 * zz2 % p
    h = (x2 * zz1 - u1) % p
    r = (y2 * z1 * zz1 - s1) % p
    if not h:
        return _dbl(p1) if not r else _INF
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - s1 * hhh) % p, h * z1 * z2 % p


def verify(digest, sig, key, feed=None):
    # True if sig (64 bytes r||s) is an ES256 signature of the SHA-256 digest (32 bytes) by the
    # public key (64 bytes X||Y). feed: called now and then (the watchdog, on a board).
    if len(sig) != 64 or len(key) != 64 or len(digest) != 32:
        return False
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    qx = int.from_bytes(key[:32], "big")
    qy = int.from_bytes(key[32:], "big")
    if not (0 < r < _N and 0 < s < _N) or qx >= _P or qy >= _P:
        return False
    if (qy * qy - qx * qx * qx + 3 * qx - _B) % _P:
        return False  # not on the curve (SEC 1 §3.2.2.1)
    w = _inv(s, _N)
    u1 = int.from_bytes(digest, "big") * w % _N  # a 256-bit hash needs no truncation
    u2 = r * w % _N
    q = (qx, qy, 1)
    both = _add(_G, q)
    acc = _INF
    for i in range(255, -1, -1):
        acc = _dbl(acc)
        b = (u1 >> i) & 1 | ((u2 >> i) & 1) << 1
        if b:
            acc = _add(acc, (_G, q, both)[b - 1])
        if feed and not i & 31:
            feed()
    x, _, z = acc
    if not z:
        return False
    return x * _inv(z * z % _P, _P) % _P % _N == r
