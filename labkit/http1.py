"""The load generator's HTTP client: one GET, over kept-alive HTTP/1.1 connections.

A load generator must cost far less than the server it measures. httpx spends 0.6 to
1.5 ms of CPU per request in its models, its pool's scans and anyio; this client knows
a single request, writes its prepared bytes on an asyncio transport, parses the answer
with httptools (uvicorn's parser), and times each request with one loop timer.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque

import httptools
import httpx

from .certs import trusting_the_lab

# (status, error kind, X-Instance, X-Version); status 0 when no response came
Outcome = tuple[int, str, str, str]
TIMEOUT: Outcome = (0, "timeout", "", "")
CONNECT_ERROR: Outcome = (0, "connect", "", "")
READ_ERROR: Outcome = (0, "read", "", "")  # closed, reset, or not HTTP, before a whole response


class HttpSender:
    """GET `url` with fixed headers; `send()` returns the Outcome of one request.

    Connections are reused most-recently-idle first, so a light run keeps a single one;
    a new one opens when every open one is busy, up to `max_connections`, after which
    requests wait for the next connection to come free.
    """

    def __init__(self, url: str, *, host: str | None, source_address: str | None,
                 timeout: float, trace_sample: float | None, max_connections: int) -> None:
        parsed = httpx.URL(url)
        self.address = (parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
        self.local_addr = (source_address, 0) if source_address else None
        self.timeout, self.trace_sample = timeout, trace_sample
        self.max_connections = max_connections
        # loading CA certificates is slow: once per run; the system's and the lab's CA
        self.ssl = trusting_the_lab() if parsed.scheme == "https" else None
        self.head = (
            b"GET " + parsed.raw_path + b" HTTP/1.1\r\n"
            b"Host: " + (host.encode() if host else parsed.netloc) + b"\r\n"
            b"User-Agent: labkit\r\nAccept: */*\r\n"
        )
        self.loop = asyncio.get_running_loop()
        self.idle: dict[_Connection, None] = {}  # insertion-ordered: popitem() is the newest
        self.connections: set[_Connection] = set()
        self.connecting = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def send(self) -> Outcome:
        task = asyncio.current_task()
        assert task is not None
        # One timer per request bounds all of it (wait, connect, response); cheaper than
        # asyncio.wait_for, which wraps every request in a task of its own.
        timer = self.loop.call_at(self.loop.time() + self.timeout, task.cancel)
        try:
            return await self._get(self._request())
        except asyncio.CancelledError:
            return TIMEOUT
        except OSError:  # only opening a connection raises; later failures are outcomes
            return CONNECT_ERROR
        finally:
            timer.cancel()

    def _request(self) -> bytes:
        if self.trace_sample is None:
            return self.head + b"\r\n"
        # W3C trace context: a fresh trace per request, sampled with the given probability
        sampled = random.random() < self.trace_sample
        return self.head + b"traceparent: 00-%032x-%016x-%s\r\n\r\n" % (
            random.getrandbits(128) or 1, random.getrandbits(64) or 1,
            b"01" if sampled else b"00",
        )

    async def _get(self, request: bytes) -> Outcome:
        connection = await self._acquire()
        try:
            outcome = await connection.request(request)
            if connection.closed_unanswered and connection.reused:
                # The server closed a kept-alive connection as this request went out on it (a
                # gateway that shuts down closes its idle ones): like browsers and Go's client,
                # send the GET again, once, on a new connection (RFC 9112 section 9.3.1).
                connection = await self._acquire(fresh=True)
                outcome = await connection.request(request)
            return outcome
        finally:
            self._release(connection)

    async def _acquire(self, fresh: bool = False) -> _Connection:
        while True:
            has_room = self.connecting + len(self.connections) < self.max_connections
            if has_room and (fresh or not self.idle):
                return await self._connect()
            if self.idle:
                return self.idle.popitem()[0]
            waiter = self.loop.create_future()
            self.waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.cancelled():  # woken as the timeout struck: pass the turn on
                    self._wake()
                raise

    async def _connect(self) -> _Connection:
        self.connecting += 1
        try:
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self), *self.address, ssl=self.ssl,
                local_addr=self.local_addr,
            )
        finally:
            self.connecting -= 1
            self._wake()  # on failure there is room again; on success it changes nothing
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.ready():
            self.idle[connection] = None
            self._wake()
        else:  # closed, or a response may still come: it cannot carry another request
            connection.abort()

    def _wake(self) -> None:
        """Let the longest-waiting request look again for a connection."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def opened(self, connection: _Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        self.idle.pop(connection, None)
        self._wake()

    async def aclose(self) -> None:
        for connection in list(self.connections):
            connection.abort()
        await asyncio.sleep(0)  # let the transports report their connection_lost


class _Connection(asyncio.Protocol):
    """One connection carrying one request at a time; its parser lives as long as it does."""

    def __init__(self, sender: HttpSender) -> None:
        self.sender = sender
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: asyncio.Future[Outcome] | None = None  # of the request in flight
        self.keep_alive = True
        self.reused = False  # it has answered a request before
        self.answered = False  # bytes of the current response have arrived
        self.closed_unanswered = False
        self.status, self.instance, self.version = 0, "", ""
        self.framed = False  # a length or chunks mark the body's end; else the close does

    def request(self, data: bytes) -> asyncio.Future[Outcome]:
        assert self.transport is not None
        self.response = self.sender.loop.create_future()
        self.answered, self.framed = False, False
        self.status, self.instance, self.version = 0, "", ""
        self.transport.write(data)
        return self.response

    def ready(self) -> bool:
        """Open, kept alive, and no request in flight."""
        return (self.response is None and self.keep_alive and self.transport is not None
                and not self.transport.is_closing())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sender.opened(self)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(READ_ERROR)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.keep_alive = False
        self.closed_unanswered = self.response is not None and not self.answered
        if self.status and not self.framed:  # a body that ends with the connection
            self._answer((self.status, "", self.instance, self.version))
        self._answer(READ_ERROR)
        self.sender.closed(self)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"x-instance":
            self.instance = value.decode("latin-1")
        elif name == b"x-version":
            self.version = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.reused = True
        self.keep_alive = self.parser.should_keep_alive() and self.response is not None
        self._answer((self.status, "", self.instance, self.version))
        if not self.keep_alive:  # closing, or an answer nobody asked for
            self.abort()

    def _answer(self, outcome: Outcome) -> None:
        response, self.response = self.response, None
        if response is not None and not response.done():
            response.set_result(outcome)
