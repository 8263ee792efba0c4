"""The host side of the board's serial line: a TCP connection or a pty, one host at a time.

A `Link` is one host session: `recv()` returns b"" when the host closed the port, `send()` drops
data once the link is closed, `close()` ends the session from the board's side (a vanished board,
or a newer session taking over).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from typing import Protocol


class Link(Protocol):
    def recv(self) -> bytes: ...

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SocketLink:
    """A `socket://` session (pyserial's TCP URL handler)."""

    def __init__(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn

    def recv(self) -> bytes:
        try:
            return self._conn.recv(4096)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self._conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)
        self._conn.close()


class PtyLink:
    """A session on the board's pty: from the host opening the slave to closing it.

    Linux reports POLLHUP on the master while no process has the slave open; that is how the
    board tells a host arriving and leaving. The board cannot close the host's file descriptor,
    so `close()` only stops serving it until the host goes away.
    """

    def __init__(self, master: int) -> None:
        self._master = master
        self._closed = threading.Event()

    def recv(self) -> bytes:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.1)
            except (OSError, ValueError):
                return b""
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return b""  # EIO: the host closed the slave
            if data:
                return data
            return b""
        return b""

    def send(self, data: bytes) -> None:
        if self._closed.is_set():
            return
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def close(self) -> None:
        self._closed.set()


class PtyPort:
    """A pty whose slave (`path`, e.g. /dev/pts/7) the host opens like a USB serial port.

    Hosts must connect without the DTR/RTS reset (esptool `--before no-reset`): a pty has no
    modem lines and the ioctls fail with ENOTTY.
    """

    def __init__(self, on_session: Callable[[PtyLink], None]) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # until the host sets its own mode: no echo, no line editing
        self.path = os.ttyname(slave)
        os.close(slave)
        self._master = master
        self._on_session = on_session
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="pty", daemon=True).start()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._master, select.POLLIN | select.POLLHUP)
        while not self._closed.is_set():
            events = poller.poll(50)
            if any(ev & select.POLLNVAL for _, ev in events):
                return  # closed: the board vanished or stops
            if not events or any(ev & select.POLLHUP for _, ev in events):
                time.sleep(0.05)  # no host has the slave open
                continue
            self._on_session(PtyLink(self._master))  # returns when the host closes the port
            self._wait_for_hangup(poller)

    def _wait_for_hangup(self, poller: select.poll) -> None:
        """After a session the board stopped serving, wait until the host closes the slave."""
        while not self._closed.is_set():
            events = poller.poll(50)
            if any(ev & (select.POLLHUP | select.POLLNVAL) for _, ev in events):
                return
            if events:
                with contextlib.suppress(OSError):
                    os.read(self._master, 4096)  # a dropped session's bytes: discarded

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            os.close(self._master)
