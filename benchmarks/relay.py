"""A TCP relay on 127.0.0.1 that counts the bytes a client sends and can cut the line; bench_resume.py's.

Every connection accepted on the relay's port is joined to a new connection to the target port. The bytes
going client -> server are counted (all connections together). Armed with ``cut_after`` bytes, the relay cuts
the line once the count passes it: every open connection is reset at once (both ends), and every connection
accepted after that is reset as soon as it comes (a listening port that answers with RST, like a network that
went away mid-night), so a client's retries fail too. ``arm()`` again resets the count and the cut.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["Relay"]

BUFFER = 256 * 1024
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


def _reset(sock: socket.socket) -> None:
    """Close with an RST; never raises."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class Relay:
    """127.0.0.1:<port> -> 127.0.0.1:<target_port>; ``sent`` counts client -> server bytes since ``arm``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._sent = 0
        self._cut_after: int | None = None
        self._cut = False
        self.connections = 0  # accepted and joined since arm
        self.refused = 0  # reset on arrival since arm, once cut
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    @property
    def cut(self) -> bool:
        with self._lock:
            return self._cut

    def start(self) -> Relay:
        self._acceptor.start()
        return self

    def arm(self, cut_after: int | None) -> None:
        """Start counting from 0; with `cut_after`, cut every connection once more than that many bytes went up."""
        with self._lock:
            self._sent, self._cut_after, self._cut = 0, cut_after, False
            self.connections = self.refused = 0

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _reset(sock)
            self._open.clear()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                cut = self._cut
                if cut:
                    self.refused += 1
            if cut:
                _reset(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open.update((client, server))
            pair = _Pair(client, server)
            threading.Thread(target=self._pump, args=(pair, client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, server, client, False), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket, upward: bool) -> None:
        """Copy one direction; at its end pass the half-close on, and close the pair once both ends are done."""
        buffer = bytearray(BUFFER)
        view = memoryview(buffer)
        try:
            while True:
                n = source.recv_into(buffer)
                if n == 0:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    break
                if upward and self._count(n):
                    return
                sink.sendall(view[:n])
        except OSError:
            self._forget(pair.sockets)
            for sock in pair.sockets:
                _reset(sock)
            return
        if pair.finished():
            self._forget(pair.sockets)
            for sock in pair.sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _count(self, n: int) -> bool:
        """Count `n` bytes about to go up; True (and everything reset) if they pass the cut, so they do not go."""
        with self._lock:
            if self._cut:
                victims: list[socket.socket] = list(self._open)
            else:
                self._sent += n
                if self._cut_after is None or self._sent <= self._cut_after:
                    return False
                self._sent -= n  # these never reach the server
                self._cut = True
                victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)
        return True

    def _forget(self, socks: tuple[socket.socket, ...]) -> None:
        with self._lock:
            self._open.difference_update(socks)


class _Pair:
    """One relayed connection: its two sockets and how many of its two directions are still copying."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.sockets = (client, server)
        self._lock = threading.Lock()
        self._running = 2

    def finished(self) -> bool:
        """One direction ended cleanly; True for the second."""
        with self._lock:
            self._running -= 1
            return self._running == 0
