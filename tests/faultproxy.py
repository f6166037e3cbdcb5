"""A small fault-injecting HTTP/1.1 reverse proxy for the test-suite.

Tests put it between boto3 and a moto server to make "S3" misbehave on demand (throttle,
reset, corrupt, truncate, stall, go down) without mocking botocore: the client sees real
sockets and real wire bytes.  Each client connection carries one request and is answered
with ``Connection: close`` (botocore's pool copes), which keeps framing trivially right when
a fault strikes mid-stream.  Request bodies are streamed verbatim (``Content-Length`` or
chunked, trailers included); upstream responses are buffered so they can be mangled.

    with FaultProxy("127.0.0.1", moto_port) as proxy:
        rule = proxy.add_rule(status(503, "SlowDown"), method="PUT", first=2)
        ...  # boto3 client with endpoint_url=proxy.url
        assert rule.injected == 2
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from http import HTTPStatus
from typing import Literal
from xml.sax.saxutils import escape

_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"expect", b"upgrade", b"te"}
Pieces = Iterator[tuple[bytes, bool]]  # raw body pieces, flagged True when they are payload (not framing)


@dataclasses.dataclass(frozen=True)
class Action:
    """What to do to a request a rule selected; build one with the factories below."""

    name: str
    n: int = 0
    seconds: float = 0.0
    code: str = ""
    message: str = ""


def status(code: int, s3_error_code: str = "InternalError", message: str = "Injected by faultproxy") -> Action:
    """Answer at once with an S3 XML error; the request never reaches upstream."""
    return Action("status", n=code, code=s3_error_code, message=message)


def reset_after(n_bytes: int = 0) -> Action:
    """Forward at most ``n_bytes`` raw body bytes, then RST the client and abort upstream."""
    return Action("reset_after", n=n_bytes)


def corrupt_request_body(offset: int = 0) -> Action:
    """Flip (XOR 0xFF) the payload byte at ``offset``; chunk framing is never touched."""
    return Action("corrupt_request_body", n=offset)


def truncate_response_body(n: int) -> Action:
    """Relay only ``n`` body bytes under the original headers, then close: a short read."""
    return Action("truncate_response_body", n=n)


def corrupt_response_body(offset: int = 0) -> Action:
    """Flip (XOR 0xFF) the upstream response's payload byte at ``offset``."""
    return Action("corrupt_response_body", n=offset)


def delay(seconds: float) -> Action:
    """Stall before forwarding (cut short by ``sever_all``/``stop``)."""
    return Action("delay", seconds=seconds)


def opaque_etags() -> Action:
    """Relay the answer with every ETag (the header, and each ``<ETag>`` of an XML answer: a listing, a completed
    multipart upload) replaced by a stable value that is not the MD5 of the object, as AWS answers for SSE-KMS
    objects. An object's own bytes (a GetObject body) are never touched.

    The one stand-in for AWS itself: no endpoint here encrypts with KMS the way AWS does (moto, Ceph and s3rver
    all keep MD5 ETags for SSE-KMS objects), so an SSE-KMS night's verification is tested against this answer.
    Values are derived from the real ETag: the same object gets the same value in a HEAD and in a listing, a
    changed object gets another, and a multipart ETag keeps its ``-N``.
    """
    return Action("opaque_etags")


@dataclasses.dataclass(eq=False)
class Rule:
    """Selects requests by method and ``re.search`` on path+query, then by one optional predicate.

    ``nth``: only the Nth match (1-based); ``first``: the first N matches; ``probability``: each
    match fires with that chance, drawn from ``random.Random(seed)``; none of them: every match.
    """

    action: Action
    method: str | None = None
    path: str | None = None
    nth: int | None = None
    first: int | None = None
    probability: float | None = None
    seed: int = 0
    matched: int = 0  # requests that matched method and path
    injected: int = 0  # requests this rule acted on
    _rng: random.Random = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.nth, self.first, self.probability)) > 1:
            raise ValueError("use at most one of nth, first, probability")
        self.method = self.method.upper() if self.method else None
        self._rng = random.Random(self.seed)

    def _fires(self, method: str, target: str) -> bool:
        """Called under the proxy lock, once per request, in rule order."""
        if (self.method and method != self.method) or (self.path and not re.search(self.path, target)):
            return False
        self.matched += 1
        if self.nth is not None:
            hit = self.matched == self.nth
        elif self.first is not None:
            hit = self.matched <= self.first
        else:
            hit = self.probability is None or self._rng.random() < self.probability
        self.injected += hit
        return hit


@dataclasses.dataclass
class Record:
    """One request as the proxy saw it; ``status`` is what the client got (None: no response)."""

    method: str
    path: str
    action: str | None
    upstream_status: int | None = None
    status: int | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # request headers, names lower-cased


class _AbortError(Exception):
    """The connection was severed, or the peer broke the protocol: tear it down."""


class _Reader:
    """Buffered socket reader that gives up as soon as its connection is severed."""

    def __init__(self, sock: socket.socket, severed: threading.Event) -> None:
        self.sock, self.severed, self.buf = sock, severed, bytearray()

    def _fill(self) -> bool:
        data = b"" if self.severed.is_set() else self.sock.recv(65536)
        if self.severed.is_set():
            raise _AbortError("severed")
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while (i := self.buf.find(b"\n")) < 0:
            if len(self.buf) > 65536 or not self._fill():
                raise _AbortError("line too long, or EOF")
        line = bytes(self.buf[: i + 1])
        del self.buf[: i + 1]
        return line

    def read(self, n: int) -> bytes:
        """1..n bytes; EOF is an error."""
        if not self.buf and not self._fill():
            raise _AbortError("EOF in body")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_head(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        first, headers = self.readline().rstrip(b"\r\n"), []
        while (line := self.readline()) not in (b"\r\n", b"\n"):
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        return first, headers

    def body(self, headers: list[tuple[bytes, bytes]], to_eof: bool = False) -> Pieces:
        """The raw body, framing included; chunk-size lines, CRLFs and trailers are not payload."""
        h = {k.lower(): v for k, v in headers}
        if b"chunked" in h.get(b"transfer-encoding", b"").lower():
            while size := int((line := self.readline()).split(b";")[0].strip(), 16):
                yield line, False
                while size:
                    yield (data := self.read(min(size, 65536))), True
                    size -= len(data)
                yield self.readline(), False  # the CRLF closing the chunk
            yield line, False  # the last-chunk line, then trailers (aws-chunked checksums) and a blank line
            while (line := self.readline()) not in (b"\r\n", b"\n"):
                yield line, False
            yield line, False
        elif b"content-length" in h:
            left = int(h[b"content-length"])
            while left:
                yield (data := self.read(min(left, 65536))), True
                left -= len(data)
        elif to_eof:
            while self.buf or self._fill():
                yield self.read(65536), True


def _flip(pieces: Pieces, offset: int) -> Pieces:
    """Pass pieces through, XOR-ing the payload byte at ``offset`` with 0xFF."""
    seen = 0
    for data, payload in pieces:
        if payload and seen <= offset < seen + len(data):
            yield data[: offset - seen] + bytes([data[offset - seen] ^ 0xFF]) + data[offset - seen + 1 :], True
        else:
            yield data, payload
        seen += len(data) if payload else 0


_ETAG_XML = re.compile(rb"<ETag>(.*?)</ETag>", re.DOTALL)
_QUOTES = (b"&quot;", b"&#34;", b'"')


def _opaque(etag: bytes) -> bytes:
    """An ETag, quoted as it came, turned into a stable value that is not an MD5 of the data (see opaque_etags)."""
    quote = next((q for q in _QUOTES if etag.startswith(q) and etag.endswith(q) and len(etag) > 2 * len(q)), b"")
    digest, dash, parts = etag[len(quote) : len(etag) - len(quote)].partition(b"-")
    opaque = hashlib.sha256(b"opaque etag " + digest).hexdigest()[:32].encode()
    return quote + opaque + dash + parts + quote


def _is_xml(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and b"xml" in v.lower() for k, v in headers)


def _opaque_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, _opaque(v) if k.lower() == b"etag" else v) for k, v in headers]


def _with_body(
    resp: tuple[bytes, list[tuple[bytes, bytes]]], body: bytes
) -> tuple[tuple[bytes, list[tuple[bytes, bytes]]], bytes]:
    """The response head framed for ``body`` by length (the proxy closes the connection after it anyway)."""
    framing = (b"content-length", b"transfer-encoding")
    headers = [(k, v) for k, v in resp[1] if k.lower() not in framing] + [(b"Content-Length", b"%d" % len(body))]
    return (resp[0], headers), body


def _reset(sock: socket.socket) -> None:
    """Abortive close: with SO_LINGER 0 the kernel sends RST, so the peer sees ECONNRESET."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _head(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [first, *(k + b": " + v for k, v in headers if k.lower() not in _HOP_BY_HOP), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Conn:
    """An in-flight client connection, so that ``sever_all`` can reach it from another thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.severed = sock, threading.Event()
        self.upstream: socket.socket | None = None

    def sever(self) -> None:
        """Wake the owning thread, which then sends the RST (only the owner closes its sockets)."""
        self.severed.set()
        for s, how in ((self.sock, socket.SHUT_RD), (self.upstream, socket.SHUT_RDWR)):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.shutdown(how)


class FaultProxy:
    """Threaded reverse proxy on 127.0.0.1:<ephemeral port> in front of ``upstream_host:upstream_port``.

    Rules are tried in the order they were added; the first one that fires decides the request's
    fate and later rules neither see nor count it.  ``errors`` collects unexpected exceptions
    from connection threads (proxy bugs), so a fixture can assert it stayed empty.
    """

    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 30.0) -> None:
        self.upstream, self.timeout, self.port = (upstream_host, upstream_port), timeout, 0
        self._lock = threading.Lock()  # rules, counters, connection/thread sets
        self._listen_lock = threading.Lock()  # the listening socket: accept() vs refuse/restore/stop
        self._listener: socket.socket | None = None
        self._refusing, self._stopping = False, threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._rules: list[Rule] = []
        self._conns: set[_Conn] = set()
        self._threads: set[threading.Thread] = set()
        self._records: list[Record] = []
        self._by_method: Counter[str] = Counter()
        self.refused_connections = 0
        self.errors: list[BaseException] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _bind(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))  # port 0 the first time; the same port again after refuse("closed")
        s.listen(128)
        s.settimeout(0.05)  # accept() polls, so refuse/stop never wait on a blocked syscall
        self.port, self._listener = s.getsockname()[1], s

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self._bind()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener (freeing the port), sever in-flight connections, join every thread."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self.sever_all()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_rule(
        self,
        action: Action,
        *,
        method: str | None = None,
        path: str | None = None,
        nth: int | None = None,
        first: int | None = None,
        probability: float | None = None,
        seed: int = 0,
    ) -> Rule:
        """Append a :class:`Rule`; keep the result to assert on ``rule.injected``/``rule.matched``."""
        rule = Rule(action, method, path, nth, first, probability, seed)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_method.clear()
            self.refused_connections = 0

    @property
    def records(self) -> list[Record]:
        """Copies of the request records, oldest first."""
        with self._lock:
            return [dataclasses.replace(r, headers=dict(r.headers)) for r in self._records]

    @property
    def requests_total(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def requests_by_method(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_method)

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return sum(r.action is not None for r in self._records)

    def sever_all(self) -> int:
        """Reset every open client connection right now; returns how many there were."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.sever()
        return len(conns)

    def refuse(self, how: Literal["reset", "closed"] = "reset") -> None:
        """Play "endpoint down" until :meth:`restore`.

        ``"reset"``: accept, then RST each new connection.  ``"closed"``: close the listening
        socket, so connect() itself is refused (botocore: EndpointConnectionError).
        """
        with self._listen_lock:
            self._refusing = True
            if how == "closed" and self._listener is not None:
                self._listener.close()
                self._listener = None

    def restore(self) -> None:
        """Undo :meth:`refuse`, re-binding the same port if it was closed."""
        with self._listen_lock:
            self._refusing = False
            if self._listener is None and not self._stopping.is_set():
                self._bind()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            conn = None
            with self._listen_lock:
                refusing, listener = self._refusing, self._listener
                with contextlib.suppress(OSError):  # includes the poll timeout
                    conn = listener.accept()[0] if listener is not None else None
            if conn is None:
                if listener is None:
                    self._stopping.wait(0.05)
            elif refusing:
                with self._lock:
                    self.refused_connections += 1
                _reset(conn)
            else:
                conn.settimeout(self.timeout)
                c = _Conn(conn)
                t = threading.Thread(target=self._serve, args=(c,), name="faultproxy-conn", daemon=True)
                with self._lock:
                    self._conns.add(c)
                    self._threads = {x for x in self._threads if x.is_alive()} | {t}
                t.start()

    def _serve(self, c: _Conn) -> None:
        abort = True
        try:
            abort = self._serve_one(c)
        except (_AbortError, OSError):
            pass
        except Exception as e:  # a proxy bug: record it for the test, and still tear down cleanly
            with self._lock:
                self.errors.append(e)
        finally:
            with self._lock:
                self._conns.discard(c)
            for s in (c.upstream, c.sock):
                if s is not None and (abort or c.severed.is_set()):
                    _reset(s)
                elif s is not None:
                    s.close()

    def _serve_one(self, c: _Conn) -> bool:
        """Handle the connection's single request; True means "tear it down with a RST"."""
        client = _Reader(c.sock, c.severed)
        try:
            first, headers = client.read_head()
        except _AbortError:
            return False  # the client left without sending a request
        method, target, _version = first.decode("latin-1").split(" ", 2)
        with self._lock:
            action = next((r.action for r in self._rules if r._fires(method, target)), None)
            kind = action.name if action else None
            hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
            rec = Record(method, target, kind, headers=hdrs)
            self._records.append(rec)
            self._by_method[method] += 1
        expect = any(k.lower() == b"expect" and v.lower() == b"100-continue" for k, v in headers)

        if action is not None and kind == "status":
            if not expect:  # drain first, so the client is not mid-send when it gets the answer
                for _ in client.body(headers):
                    pass
            body = b"" if method == "HEAD" else self._error_xml(action, target)
            rec.status = action.n
            reason = HTTPStatus(action.n).phrase if action.n in HTTPStatus._value2member_map_ else "Injected"
            c.sock.sendall(
                _head(
                    f"HTTP/1.1 {action.n} {reason}".encode(),
                    [
                        (b"Content-Type", b"application/xml"),
                        (b"Content-Length", b"%d" % len(body)),
                        (b"x-amz-request-id", b"faultproxy"),
                    ],
                )
                + body
            )
            return False
        if action is not None and kind == "delay" and c.severed.wait(action.seconds):
            return True

        up = c.upstream = socket.create_connection(self.upstream, timeout=self.timeout)
        if c.severed.is_set():
            return True
        up.sendall(_head(first, headers))
        if expect:  # Expect was stripped upstream, so the client's 100 Continue comes from us
            c.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        pieces = client.body(headers)
        if action is not None and kind == "corrupt_request_body":
            pieces = _flip(pieces, action.n)
        budget = action.n if action is not None and kind == "reset_after" else -1
        for data, _ in pieces:
            chunk = data if budget < 0 else data[:budget]
            budget -= len(chunk) if budget >= 0 else 0
            up.sendall(chunk)
            if budget == 0:
                return True
        if budget > 0:
            return True  # the whole body fit in the budget: reset before any response

        upstream = _Reader(up, c.severed)
        while (code := int((resp := upstream.read_head())[0].split()[1])) < 200:
            pass  # skip interim 1xx responses
        rec.upstream_status = code
        no_body = method == "HEAD" or code in (204, 304)
        pieces = iter(()) if no_body else upstream.body(resp[1], to_eof=True)
        if action is not None and kind == "corrupt_response_body":
            pieces = _flip(pieces, action.n)
        received = list(pieces)
        raw = b"".join(d for d, _ in received)
        if action is not None and kind == "truncate_response_body":
            raw = raw[: action.n]
        if action is not None and kind == "opaque_etags":
            resp = (resp[0], _opaque_headers(resp[1]))
            if not no_body and _is_xml(resp[1]):  # S3's own answer, not an object's bytes: rewritten, then reframed
                payload = b"".join(d for d, is_payload in received if is_payload)
                body = _ETAG_XML.sub(lambda m: b"<ETag>" + _opaque(m[1]) + b"</ETag>", payload)
                resp, raw = _with_body(resp, body)
        rec.status = code
        c.sock.sendall(_head(*resp) + raw)
        return False

    @staticmethod
    def _error_xml(action: Action, resource: str) -> bytes:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(action.code)}</Code>'
            f"<Message>{escape(action.message)}</Message><Resource>{escape(resource)}</Resource>"
            "<RequestId>faultproxy</RequestId></Error>"
        ).encode()
