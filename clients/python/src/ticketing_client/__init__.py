"""Typed client for the ticketing.v1 gRPC API.

The stubs are generated from ``proto/`` into the ``ticketing.v1`` package
(``ci/gen-clients``); this module adds what every caller needs around them:
credentials on every call, a default deadline, and the ``google.rpc.ErrorInfo``
reason of a failed call::

    from ticketing_client import Client, ApiError
    from ticketing.v1 import catalog_pb2

    with Client("127.0.0.1:8080") as client:
        token = client.login("ana@example.com", "a long enough password")
        events = client.catalog.ListEvents(catalog_pb2.ListEventsRequest())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, Iterator

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ticketing.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    checkin_pb2_grpc,
    orders_pb2_grpc,
    payments_pb2_grpc,
    reports_pb2_grpc,
    waiting_room_pb2,
    waiting_room_pb2_grpc,
)

__all__ = ["ApiError", "Client"]

DEFAULT_DEADLINE_SECONDS = 10.0

# Live streams last until the caller stops reading: no default deadline.
_LIVE_METHODS = frozenset(
    {
        "/ticketing.v1.CatalogService/WatchAvailability",
        "/ticketing.v1.WaitingRoomService/WatchQueueEntry",
    }
)


@dataclass
class ApiError(Exception):
    """A failed call: the gRPC code and, for domain errors, the reason
    (``SOLD_OUT``, ``RATE_LIMITED``, ...) and metadata from ``ErrorInfo``."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: int | None = None

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> ApiError:
        call: Any = error  # a grpc.Call as well as an RpcError
        trailers = dict(call.trailing_metadata() or ())
        retry_after = trailers.get("retry-after")
        api_error = ApiError(
            code=call.code(),
            message=call.details() or "",
            retry_after_seconds=int(retry_after) if retry_after else None,
        )
        status = rpc_status.from_call(call)
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                api_error.reason = info.reason
                api_error.metadata = dict(info.metadata)
        return api_error


class _Credentials(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
):
    """Adds the bearer token and the default deadline to every call, and turns
    failures into ApiError."""

    def __init__(self, token: Callable[[], str | None], deadline: float) -> None:
        self._token = token
        self._deadline = deadline

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata: list[tuple[str, str | bytes]] = list(details.metadata or ())
        token = self._token()
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        default = None if method in _LIVE_METHODS else self._deadline
        return _CallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else default,
            metadata=tuple(metadata),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
            compression=details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(self._details(details), request)
        exception = outcome.exception()
        if isinstance(exception, grpc.RpcError):
            raise ApiError.from_rpc_error(exception) from None
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class Client:
    """One channel to the service and a typed stub per service on it.

    ``token`` (a user's access token or a scanner's device token) is sent on
    every call; :meth:`login` sets it from an e-mail and password. An
    internal tool passes ``api_key`` (``tk_…``, from ``AuthService.CreateApiKey``)
    instead: it acts as the user who created it, within its scopes. Unary calls
    raise :class:`ApiError`; for a streaming call, wrap iteration with
    :meth:`ApiError.from_rpc_error` where the reason matters.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        secure: bool = False,
        api_key: str | None = None,
    ) -> None:
        if token and api_key:
            raise ValueError("pass a token or an API key, not both")
        self.token = token or api_key
        self._raw = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
        channel = grpc.intercept_channel(self._raw, _Credentials(lambda: self.token, deadline_seconds))
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(channel)
        self.payments = payments_pb2_grpc.PaymentServiceStub(channel)
        self.checkin = checkin_pb2_grpc.CheckInServiceStub(channel)
        self.reports = reports_pb2_grpc.ReportServiceStub(channel)
        self.waiting_room = waiting_room_pb2_grpc.WaitingRoomServiceStub(channel)

    def login(self, email: str, password: str) -> str:
        """Exchanges credentials for an access token and uses it from now on."""
        issued = self.auth.IssueToken(auth_pb2.IssueTokenRequest(email=email, password=password))
        self.token = issued.access_token
        return self.token

    def watch_availability(self, event_id: str) -> Iterator[catalog_pb2.AvailabilityUpdate]:
        """The event's availability as it changes: the current state first,
        then each change (at most one a second), for as long as the caller
        reads. Ends with ``UNAVAILABLE`` when the server drains: call again."""
        request = catalog_pb2.WatchAvailabilityRequest(event_id=event_id)
        yield from self.catalog.WatchAvailability(request)

    def watch_queue_entry(self, event_id: str, queue_entry_id: str) -> Iterator[waiting_room_pb2.QueueEntry]:
        """The caller's queue entry as it moves: its place, then its admission
        (with the token) the moment it is granted, until it expires."""
        request = waiting_room_pb2.WatchQueueEntryRequest(event_id=event_id, queue_entry_id=queue_entry_id)
        yield from self.waiting_room.WatchQueueEntry(request)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

