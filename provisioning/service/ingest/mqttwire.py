"""A lean MQTT 3.1.1 publisher connection for the outbox relay: CONNECT, QoS 1 PUBLISH, PUBACK.

Why not paho for this one job: paho spends about 75 µs of CPU per QoS 1 message on this machine
(a message object, a lock, a wake-up byte through a socketpair and a `send()` per PUBLISH, three
`recv()`s per PUBACK, a hand-off between two threads), which caps one publisher at roughly
13,000 messages/s on a quiet core. The relay needs one connection that writes a whole window of
PUBLISH packets with one `sendall()` and reads PUBACKs in bulk; that is all this class does.
Everything else (subscribing, QoS 2, MQTT 5) stays with paho. In the style of micropython-lib's
`umqtt.simple`: one class, one exception carrying the broker's code, packets built in place.

Packet layouts are MQTT 3.1.1 §3.1 (CONNECT), §3.2 (CONNACK), §3.3 (PUBLISH), §3.4 (PUBACK) and
§3.12/§3.13 (PINGREQ/PINGRESP); the remaining-length encoding is §2.2.3.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct

_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH_QOS1 = 0x32  # PUBLISH, QoS 1 (§3.3.1.2)
_RETAIN = 0x01
_PUBACK = 0x40
_PINGRESP = 0xD0
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"
_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_PUBACK_SIZE = 4
_RECV_BYTES = 1 << 16


class BrokerError(OSError):
    """The broker refused or broke the protocol; `code` is the CONNACK return code, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _remaining_length(n: int) -> bytes:
    """MQTT 3.1.1 §2.2.3: seven bits per byte, high bit set while more follow."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value  # §1.5.3: UTF-8 with a two-byte length


def encode_topic(topic: str) -> bytes:
    """The topic as it goes into a PUBLISH, with its length prefix; encode once, publish often."""
    return _string(topic.encode())


def publish_packet(topic: bytes, payload: bytes, retain: bool, packet_id: int) -> bytes:
    """One QoS 1 PUBLISH (§3.3): `topic` as returned by `encode_topic`."""
    length = len(topic) + 2 + len(payload)
    header = _PUBLISH_QOS1 | _RETAIN if retain else _PUBLISH_QOS1
    return b"".join(
        (bytes((header,)), _remaining_length(length), topic, struct.pack("!H", packet_id), payload)
    )


class Connection:
    """One clean-session MQTT 3.1.1 connection that publishes at QoS 1.

    Every failure is an `OSError` (a `BrokerError` for protocol trouble); the caller owns
    reconnecting, as in `mqtt_as`, and resends whatever was not acknowledged.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        keepalive_s: int,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        send_timeout_s: float = 30.0,
    ) -> Connection:
        """Connect, send CONNECT and wait for CONNACK; raises `OSError` / `BrokerError`.

        Afterwards a write that cannot go out for `send_timeout_s` (a broker host that vanished
        without a reset) raises `TimeoutError` instead of blocking until TCP gives up.
        """
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.sendall(_connect_packet(client_id, username, password, keepalive_s))
            connection = cls(sock)
            connection._read_connack(timeout_s)
        except BaseException:
            sock.close()
            raise
        connection._sock.settimeout(send_timeout_s)
        return connection

    def _read_connack(self, timeout_s: float) -> None:
        self._sock.settimeout(timeout_s)
        while len(self._buffer) < 4:
            chunk = self._sock.recv(4 - len(self._buffer))
            if not chunk:
                raise BrokerError("broker closed the connection before CONNACK")
            self._buffer += chunk
        kind, size, _flags, code = self._buffer[:4]
        del self._buffer[:4]
        if kind != _CONNACK or size != 2:
            raise BrokerError("broker did not answer CONNECT with CONNACK")
        if code:
            reason = _CONNACK_REASONS.get(code, "refused")
            raise BrokerError(f"broker refused the connection: {reason}", code)

    def send(self, data: bytes) -> None:
        """Write packets (one or many, already encoded) to the broker."""
        self._sock.sendall(data)

    def ping(self) -> None:
        """PINGREQ (§3.12): keeps an idle connection alive within the keep-alive interval."""
        self._sock.sendall(_PINGREQ)

    def read_acks(self, timeout_s: float, interrupt: socket.socket | None = None) -> list[int]:
        """Packet ids of the PUBACKs that arrive within `timeout_s` (possibly none); returns
        early, possibly with none, when `interrupt` becomes readable."""
        if not self._buffer and not _pending_tls(self._sock):
            watched = [self._sock] if interrupt is None else [self._sock, interrupt]
            readable, _w, _x = select.select(watched, [], [], timeout_s)
            if self._sock not in readable:
                return []
        chunk = self._sock.recv(_RECV_BYTES)
        if not chunk:
            raise BrokerError("broker closed the connection")
        self._buffer += chunk
        return self._parse()

    def _parse(self) -> list[int]:
        buffer = self._buffer
        acked: list[int] = []
        at = 0
        # A PUBACK is always 4 bytes: 0x40 0x02 id-msb id-lsb (§3.4).
        while len(buffer) - at >= 2:
            kind = buffer[at]
            if kind == _PUBACK and buffer[at + 1] == 2:
                if len(buffer) - at < _PUBACK_SIZE:
                    break
                acked.append((buffer[at + 2] << 8) | buffer[at + 3])
                at += _PUBACK_SIZE
            elif kind == _PINGRESP and buffer[at + 1] == 0:
                at += 2
            else:
                raise BrokerError(f"unexpected packet 0x{kind:02x} from the broker")
        del buffer[:at]
        return acked

    def close(self) -> None:
        """DISCONNECT (§3.14) if possible, then close; never raises."""
        try:
            self._sock.settimeout(1.0)
            self._sock.sendall(_DISCONNECT)
        except OSError:
            pass
        self._sock.close()


def _pending_tls(sock: socket.socket) -> bool:
    # TLS may hold decrypted bytes that select() on the raw socket cannot see.
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _connect_packet(
    client_id: str, username: str | None, password: str | None, keepalive_s: int
) -> bytes:
    flags = 0x02  # clean session: the outbox, not a broker session, survives restarts
    body = [_string(client_id.encode())]
    if username is not None:
        flags |= 0x80
        body.append(_string(username.encode()))
        if password is not None:
            flags |= 0x40
            body.append(_string(password.encode()))
    variable = _string(b"MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive_s)
    payload = variable + b"".join(body)
    return bytes((_CONNECT,)) + _remaining_length(len(payload)) + payload
