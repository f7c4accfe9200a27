"""The HTTP app: OTLP/HTTP ingest (/v1/traces, /v1/logs) and the JSON query API (/api/...)."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import decode, queries
from .schema import connect
from .storage import Busy, Settings, Store

MAX_BODY = 16 * 1024 * 1024  # bytes, both as received and once decompressed
MAX_RECORDS = 50_000  # spans or log records in one request
MAX_TRACES = 1000
MAX_LOGS = 100_000
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf"}
TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Query bounds whose nanoseconds fit SQLite's INTEGER (2**63 - 1 ns is about 9.2e9 s).
MAX_SECONDS = 9e9
MAX_DURATION_MS = 9e12


class PayloadError(Exception):
    """The request cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def create_app(
    settings: Settings, max_body: int = MAX_BODY, max_records: int = MAX_RECORDS
) -> Starlette:
    store = Store(settings)
    readers = threading.local()  # one read-only connection per worker thread

    def reader() -> sqlite3.Connection:
        if not hasattr(readers, "conn"):
            readers.conn = connect(settings.path, readonly=True)
        return readers.conn

    def ingest(kind: str) -> Callable[[Request], Any]:
        noun = "spans" if kind == "traces" else "logs"

        async def endpoint(request: Request) -> Response:
            is_json = False
            try:
                is_json = _is_json(request)
                body = await _read_body(request, max_body)
                message = await run_in_threadpool(_parse, kind, body, is_json)
                items = decode.count(kind, message)
                if items > max_records:
                    raise PayloadError(413, "too_many_records",
                                       f"the request holds {items} {noun}; at most {max_records} "
                                       "in one request (--max-records)")  # fmt: skip
                # Reserved before the rows are built: they are what takes the memory.
                store.reserve(items)
                try:
                    decoded = await run_in_threadpool(_rows, kind, message)
                except BaseException:
                    store.release(items)
                    raise
                done = store.submit(noun, decoded.rows, items)
            except PayloadError as exc:
                store.reject(exc.reason)
                return _status(exc.status, str(exc), is_json)
            except Busy as exc:
                store.reject("busy")
                return _status(503, f"the store is busy ({exc}); retry", is_json, retry=True)
            try:
                await asyncio.wrap_future(done)
            except Exception as exc:  # noqa: BLE001 - e.g. disk full: the exporter retries 503
                store.reject("write_failed")
                return _status(503, f"could not write: {exc}", is_json, retry=True)
            for reason, dropped in decoded.rejected.items():
                store.reject(reason, dropped)
            return _export_response(kind, decoded.rejected, is_json)

        return endpoint

    def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def list_traces(request: Request) -> Response:
        params = Params(request)
        status = params.choice("status", ("ok", "error"))
        found = queries.traces(
            reader(),
            service=params.text("service"),
            since=params.number("since", -MAX_SECONDS, MAX_SECONDS),
            until=params.number("until", -MAX_SECONDS, MAX_SECONDS),
            min_duration_ms=params.number("min_duration_ms", 0, MAX_DURATION_MS),
            error=None if status is None else status == "error",
            limit=params.limit(20, MAX_TRACES),
        )
        return JSONResponse(found)

    def one_trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"].lower()
        if not TRACE_ID.fullmatch(trace_id):
            raise BadParam(f"a trace id is 32 hex characters, not {trace_id!r}")
        spans = queries.trace(reader(), trace_id)
        if not spans:
            return JSONResponse({"error": f"no trace {trace_id} in the store"}, status_code=404)
        return JSONResponse({"trace_id": trace_id, "spans": spans})

    def list_logs(request: Request) -> Response:
        params = Params(request)
        found = queries.logs(
            reader(),
            request_id=params.text("request_id"),
            trace_id=params.text("trace_id"),
            service=params.text("service"),
            instance=params.text("instance"),
            level=params.choice("level", decode.LEVELS),
            since=params.number("since", -MAX_SECONDS, MAX_SECONDS),
            until=params.number("until", -MAX_SECONDS, MAX_SECONDS),
            contains=params.text("contains"),
            limit=params.limit(1000, MAX_LOGS),
        )
        return JSONResponse(found)

    def services(request: Request) -> Response:
        return JSONResponse(queries.services(reader()))

    def stats(request: Request) -> Response:
        return JSONResponse(store.stats(reader()))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store.start()
        try:
            yield
        finally:
            await run_in_threadpool(store.stop)

    return Starlette(
        routes=[
            Route("/v1/traces", ingest("traces"), methods=["POST"]),
            Route("/v1/logs", ingest("logs"), methods=["POST"]),
            Route("/health", health),
            Route("/api/traces", list_traces),
            Route("/api/traces/{trace_id}", one_trace),
            Route("/api/logs", list_logs),
            Route("/api/services", services),
            Route("/api/stats", stats),
        ],
        exception_handlers={BadParam: _bad_param},
        lifespan=lifespan,
    )


# --- ingest --------------------------------------------------------------------------------


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return True
    if media_type in PROTOBUF_TYPES:
        return False
    raise PayloadError(415, "unsupported_media_type",
                       f"Content-Type {media_type or '(none)'!r} is not supported: "
                       "use application/x-protobuf or application/json")  # fmt: skip


async def _read_body(request: Request, limit: int) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip"):
        raise PayloadError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not supported: use gzip or none",
        )
    too_large = PayloadError(413, "too_large", f"the request is larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body, limit, too_large)
    return body


def _gunzip(data: bytes, limit: int, too_large: PayloadError) -> bytes:
    """Decompress at most `limit` bytes, so a small gzip bomb cannot exhaust memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise PayloadError(400, "bad_gzip", f"the gzip body is corrupt: {exc}") from exc
    if len(out) > limit:
        raise too_large
    if not inflater.eof:
        raise PayloadError(400, "bad_gzip", "the gzip body is truncated")
    return out


def _parse(kind: str, body: bytes, is_json: bool) -> Any:
    try:
        return decode.parse(kind, body, is_json)
    except decode.BadPayload as exc:
        raise PayloadError(400, "malformed", str(exc)) from exc


def _rows(kind: str, message: Any) -> decode.Decoded:
    try:
        return decode.span_rows(message) if kind == "traces" else decode.log_rows(message)
    except (ValueError, TypeError) as exc:  # e.g. non-finite numbers in attributes
        raise PayloadError(400, "malformed", f"cannot store the {kind}: {exc}") from exc


REJECTED = {
    "invalid_ids": "invalid trace or span ids",
    "invalid_timestamps": f"timestamps over {decode.MAX_TIME_NS} ns",
}


def _export_response(kind: str, rejected: Counter[str], is_json: bool) -> Response:
    total = rejected.total()
    if kind == "traces":
        message: Any = ExportTraceServiceResponse()
        if total:
            message.partial_success.rejected_spans = total
    else:
        message = ExportLogsServiceResponse()
        if total:
            message.partial_success.rejected_log_records = total
    if total:
        reasons = ", ".join(f"{n} with {REJECTED[reason]}" for reason, n in rejected.items())
        message.partial_success.error_message = f"items rejected: {reasons}"
    return _encode(message, 200, is_json)


def _status(code: int, message: str, is_json: bool, retry: bool = False) -> Response:
    """An OTLP error: a google.rpc.Status in the request's encoding (OTLP/HTTP spec)."""
    rpc_code = {400: 3, 413: 8, 415: 3, 503: 14}.get(code, 2)
    response = _encode(Status(code=rpc_code, message=message), code, is_json)
    if retry:
        response.headers["Retry-After"] = "1"
    return response


def _encode(message: Any, code: int, is_json: bool) -> Response:
    if is_json:
        body = json.dumps(json_format.MessageToDict(message)).encode()
        return Response(body, code, media_type="application/json")
    return Response(message.SerializeToString(), code, media_type="application/x-protobuf")


# --- query parameters ------------------------------------------------------------------------


class BadParam(Exception):
    """A query parameter is invalid: answered with 400 and this message."""


async def _bad_param(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


class Params:
    def __init__(self, request: Request) -> None:
        self.query = request.query_params

    def text(self, name: str) -> str | None:
        return self.query.get(name) or None

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise BadParam(f"{name} must be a number, not {value!r}") from None
        if not low <= number <= high:  # NaN fails this too
            raise BadParam(
                f"{name} must be a finite number from {low:g} to {high:g}, not {value!r}"
            )
        return number

    def choice(self, name: str, valid: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value.lower() not in valid:
            raise BadParam(f"{name} must be one of {', '.join(valid)}; not {value!r}")
        return value.lower() if value else None

    def limit(self, default: int, most: int) -> int:
        value = self.text("limit")
        if value is None:
            return default
        # ASCII digits only: str.isdigit() and int() also take e.g. "²" and "٣"
        if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= most:
            raise BadParam(f"limit must be a whole number from 1 to {most}, not {value!r}")
        return int(value)
