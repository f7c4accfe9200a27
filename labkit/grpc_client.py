"""gRPC channels for the lab: client-side balancing over the registry, or through the gateway.

    with registry_channel("routeguide") as channel:      # follows the registry by itself
        stub = routeguide_pb2_grpc.RouteGuideStub(channel)
    channel = gateway_channel("routeguide")               # Traefik balances per call instead

(labkit.demos.routeguide makes the notebooks' RouteGuide calls over either.)

A registry channel reads `registry/<service>/` in etcd and dials every registered
address with gRPC's own round_robin (or pick_first, to show why it is the wrong
default for a service with several instances). A daemon thread watches the
prefix; when the set of addresses changes it builds a new inner channel, swaps
it in, and closes the old one after a grace period. Stubs keep working across
swaps because every call looks up the current inner channel.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import requests
from etcd3gw.exceptions import Etcd3Exception

from .errors import LabError
from .kv import etcd_client
from .registry import PREFIX, Registry
from .topology import Endpoint, infra
from .topology import service as topology_service

log = logging.getLogger("labkit.grpc")

BALANCING = ("round_robin", "pick_first")
POLL_SECONDS = 0.5  # registry reads while no watch can be kept
CHECK_SECONDS = 1.0  # a lost watch goes silent instead of failing: check etcd this often
GRACE_SECONDS = 5.0  # an old inner channel lives this long after a swap, for in-flight calls
READY_SECONDS = 1.0  # longest a swap waits for the new inner channel to connect
CLOSE_SECONDS = 5.0  # longest close() waits for the watch thread (etcd requests time out in 2 s)


class _WatchLost(Exception):
    """etcd restarted: its watch streams are gone, though etcd3gw's iterator does not say so."""


# Errors that stop a watch or a read; the thread survives them and polls instead.
FOLLOW_ERRORS = (_WatchLost, Etcd3Exception, requests.RequestException, ValueError, KeyError)

_open: set[DiscoveredChannel] = set()


class DiscoveredChannel(grpc.Channel):
    """A channel to every registered instance of `service`, kept up to date from etcd.

    `addresses` is the registered set, `swaps` counts inner-channel replacements,
    `watching` says whether changes arrive by watch (True) or by polling (False).
    """

    def __init__(
        self, service: str, balancing: str, registry: Registry, addresses: list[str]
    ) -> None:
        self.service = service
        self.balancing = balancing
        self.watching = False
        self._registry = registry
        self._prefix = f"{PREFIX}{service}/"
        self._lock = threading.Lock()  # guards the inner channel, the retired list, subscribers
        self._addresses = addresses  # as registered now; empty if every instance is gone
        self._dialled = addresses  # what the inner channel dials, in its order
        self._inner = self._build(addresses)
        self._swaps = 0
        self._retired: list[tuple[float, grpc.Channel]] = []
        self._subscribers: list[tuple[Callable[[grpc.ChannelConnectivity], None], bool]] = []
        self._closed = threading.Event()
        self._changed = threading.Event()  # set by the watch, and by close() to wake the loop
        self._thread = threading.Thread(
            target=self._follow, name=f"registry-watch:{service}", daemon=True
        )
        _open.add(self)
        self._thread.start()

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def swaps(self) -> int:
        return self._swaps

    @property
    def following(self) -> bool:
        """True while the thread that follows the registry runs (until close())."""
        return self._thread.is_alive()

    def __repr__(self) -> str:
        return (
            f"<DiscoveredChannel {self.service} {self.balancing} over {len(self._addresses)} "
            f"addresses, {self._swaps} swaps, watching={self.watching}>"
        )

    # grpc.Channel -------------------------------------------------------------------------

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> grpc.UnaryUnaryMultiCallable:
        return _UnaryUnary(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> grpc.UnaryStreamMultiCallable:
        return _UnaryStream(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> grpc.StreamUnaryMultiCallable:
        return _StreamUnary(self, "stream_unary", method, args, kwargs)

    def stream_stream(
        self, method: str, *args: Any, **kwargs: Any
    ) -> grpc.StreamStreamMultiCallable:
        return _StreamStream(self, "stream_stream", method, args, kwargs)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Connectivity of the current inner channel; subscriptions move with each swap."""
        with self._lock:
            self._subscribers.append((callback, try_to_connect))
            self._inner.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s[0] is not callback]
            self._inner.unsubscribe(callback)

    def close(self) -> None:
        """Stop following the registry (cancels the watch) and close every inner channel."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._changed.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=CLOSE_SECONDS)
        with self._lock:
            channels = [self._inner, *(channel for _, channel in self._retired)]
            self._retired.clear()
        for channel in channels:
            channel.close()
        _open.discard(self)

    def __enter__(self) -> DiscoveredChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # following the registry ---------------------------------------------------------------

    def _build(self, addresses: list[str]) -> grpc.Channel:
        config: dict[str, Any] = {"loadBalancingConfig": [{self.balancing: {}}]}
        channel = grpc.insecure_channel(
            "ipv4:" + ",".join(addresses),  # instances register IPv4 literals (see topology)
            options=[("grpc.service_config", json.dumps(config))],
        )
        # Connect before use, so the first calls after a swap do not wait for a handshake.
        ready = grpc.channel_ready_future(channel)
        try:
            ready.result(timeout=READY_SECONDS)
        except grpc.FutureTimeoutError:
            pass  # none reachable yet: calls fail or succeed as they would have on the old one
        finally:
            ready.cancel()
        return channel

    def _follow(self) -> None:
        """Thread body: watch the registry; while no watch can be kept, poll it."""
        while not self._closed.is_set():
            with contextlib.suppress(*FOLLOW_ERRORS):  # _watch logs a loss; poll, then retry
                self._watch()  # returns on close(); raises when the watch fails or is lost
            if self._closed.wait(POLL_SECONDS):
                break
            self._retire_due()
            with contextlib.suppress(*FOLLOW_ERRORS):  # etcd unreachable: keep the last addresses
                self._resync()

    def _watch(self) -> None:
        events, cancel = self._registry.etcd.watch_prefix(self._prefix)
        # The iterator blocks until an event or cancel(): drain it on its own thread.
        drain = threading.Thread(
            target=self._drain, args=(events,), name=f"registry-events:{self.service}", daemon=True
        )
        drain.start()
        try:
            etcd_identity = self._etcd_identity()
            self._resync()  # read after the watch exists, so no change falls in between
            self.watching = True
            while not self._closed.is_set():
                if self._changed.wait(CHECK_SECONDS):
                    self._changed.clear()
                    self._resync()
                elif self._etcd_identity() != etcd_identity:
                    raise _WatchLost("etcd restarted")
                self._retire_due()
        except FOLLOW_ERRORS as exc:
            if self.watching:
                log.warning("registry watch for %s lost (%s); polling every %s s",
                            self.service, exc, POLL_SECONDS)  # fmt: skip
            raise
        finally:
            self.watching = False
            cancel()
            drain.join(timeout=1.0)

    def _drain(self, events: Iterable[Any]) -> None:
        for _ in events:
            self._changed.set()  # events are only a trigger: _resync reads the whole prefix

    def _etcd_identity(self) -> tuple[str, str, str]:
        header = self._registry.etcd.status()["header"]
        return header["cluster_id"], header["member_id"], header["raft_term"]

    def _resync(self) -> None:
        fresh = _addresses(self._registry, self.service)
        if not fresh or set(fresh) == set(self._dialled):
            # With none left there is nothing better to dial: calls fail until one returns.
            self._addresses = fresh
            return
        # Keep the known order first, so pick_first stays on its instance while others come.
        kept = [a for a in self._dialled if a in fresh]
        ordered = kept + [a for a in fresh if a not in kept]
        channel = self._build(ordered)
        with self._lock:
            if self._closed.is_set():
                channel.close()
                return
            old, self._inner = self._inner, channel
            for callback, try_to_connect in self._subscribers:
                old.unsubscribe(callback)
                channel.subscribe(callback, try_to_connect=try_to_connect)
            self._retired.append((time.monotonic() + GRACE_SECONDS, old))
            self._dialled = self._addresses = ordered
            self._swaps += 1

    def _retire_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [channel for deadline, channel in self._retired if deadline <= now]
            self._retired = [(d, c) for d, c in self._retired if d > now]
        for channel in due:
            channel.close()


class _Follows:
    """A multicallable that uses the current inner channel at each call, so stubs survive swaps."""

    def __init__(
        self, owner: DiscoveredChannel, kind: str, method: str, args: tuple, kwargs: dict
    ) -> None:
        self._owner = owner
        self._kind, self._method, self._args, self._kwargs = kind, method, args, kwargs
        self._cached: tuple[grpc.Channel, Any] | None = None

    def _current(self) -> Any:
        inner = self._owner._inner
        cached = self._cached
        if cached is None or cached[0] is not inner:
            if self._owner._closed.is_set():
                # grpcio aborts the process when a method is registered on a closed channel.
                raise ValueError("Cannot invoke RPC on closed channel!")
            # One multicallable per inner channel and method, made on the first call after a swap.
            make = getattr(inner, self._kind)
            cached = (inner, make(self._method, *self._args, **self._kwargs))
            self._cached = cached
        return cached[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._current()(*args, **kwargs)


class _SingleResponse(_Follows):
    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().future(*args, **kwargs)


class _UnaryUnary(_SingleResponse, grpc.UnaryUnaryMultiCallable):
    pass


class _UnaryStream(_Follows, grpc.UnaryStreamMultiCallable):
    pass


class _StreamUnary(_SingleResponse, grpc.StreamUnaryMultiCallable):
    pass


class _StreamStream(_Follows, grpc.StreamStreamMultiCallable):
    pass


def _addresses(registry: Registry, service: str) -> list[str]:
    """Registered addresses of `service`; a restarted instance may briefly be there twice."""
    return sorted({record["address"] for record in registry.records(service)})


def _as_endpoint(endpoint: Endpoint | str) -> Endpoint:
    if isinstance(endpoint, Endpoint):
        return endpoint
    host, _, port = str(endpoint).rpartition(":")
    if not host or not port.isdigit():
        raise LabError(f"etcd_endpoint must be an Endpoint or 'host:port', got {endpoint!r}")
    return Endpoint(host, int(port))


def registry_channel(
    service: str,
    *,
    balancing: str = "round_robin",
    registry: Registry | None = None,
    etcd_endpoint: Endpoint | str | None = None,
) -> DiscoveredChannel:
    """A channel over every instance of `service` registered in etcd; it follows changes itself.

    `balancing` is gRPC's load-balancing policy: "round_robin" (each call to the
    next ready instance) or "pick_first" (every call to one instance: the classic
    pitfall). Pass `registry` or `etcd_endpoint` to read another etcd than the lab's.
    """
    if balancing not in BALANCING:
        raise LabError(f"unknown balancing {balancing!r}; valid: {', '.join(BALANCING)}")
    if not isinstance(service, str) or not service or "/" in service:
        raise LabError(f"service must be a registered service name, got {service!r}")
    if registry is not None and etcd_endpoint is not None:
        raise LabError("pass either registry or etcd_endpoint, not both")
    if registry is None:
        registry = Registry(etcd_client(_as_endpoint(etcd_endpoint or infra().etcd)))
    where = f"etcd at {registry.etcd.host}:{registry.etcd.port}"
    try:
        addresses = _addresses(registry, service)
        if not addresses:
            known = sorted({r["service"] for r in registry.records()})
    except FOLLOW_ERRORS as exc:
        raise LabError(f"cannot read the registry from {where}: {exc}") from exc
    if not addresses:
        raise LabError(
            f"no instance of {service!r} is registered in {where}; "
            f"registered services: {', '.join(known) or 'none'}"
        )
    return DiscoveredChannel(service, balancing, registry, addresses)


def gateway_channel(service: str, gateway: str | None = None) -> grpc.Channel:
    """A channel through Traefik: h2c to the gateway, routed by authority `<service>.localhost`.

    The gateway balances each call over the instances, so the client needs no policy.
    """
    return grpc.insecure_channel(
        gateway or infra().gateway.address,
        options=[("grpc.default_authority", topology_service(service).host_rule)],
    )


@atexit.register
def _close_open_channels() -> None:
    # Runs before etcd3gw's executor joins its threads at exit, which an open watch would hang.
    for channel in list(_open):
        channel.close()
