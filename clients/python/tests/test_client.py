"""The Python client against the real server: list events, buy, pay through
the Midtrans simulator, redeem at the gate, queue in a waiting room and buy
once admitted; and the errors callers branch on."""

from __future__ import annotations

import time
import urllib.request
import uuid
from typing import Any

import grpc
import pytest
from conftest import eventually, settle, solve

from ticketing.v1 import auth_pb2, catalog_pb2, checkin_pb2, orders_pb2, payments_pb2, reports_pb2, waiting_room_pb2
from ticketing_client import ApiError, Client


def test_lists_the_published_events(anonymous: Client, server: dict[str, Any]) -> None:
    listed = anonymous.catalog.ListEvents(catalog_pb2.ListEventsRequest(page_size=50))
    assert server["eventId"] in [event.id for event in listed.events]
    event = anonymous.catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=server["eventId"]))
    assert server["categoryId"] in [category.id for category in event.ticket_categories]


def test_buys_pays_and_redeems_a_ticket(customer: Client, organizer: Client, server: dict[str, Any]) -> None:
    order = customer.orders.CreateOrder(
        orders_pb2.CreateOrderRequest(
            event_id=server["eventId"],
            items=[orders_pb2.OrderItem(ticket_category_id=server["categoryId"], quantity=2)],
            request_id=str(uuid.uuid4()),
        )
    )
    assert order.status == orders_pb2.ORDER_STATUS_PENDING
    payment = customer.payments.CreatePayment(payments_pb2.CreatePaymentRequest(order_id=order.id))
    assert payment.token

    settle(server, order.id)

    def paid() -> orders_pb2.Order | None:
        current = customer.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order.id))
        return current if current.status == orders_pb2.ORDER_STATUS_PAID else None

    eventually(paid, "the order to be paid")
    tickets = customer.orders.ListTickets(orders_pb2.ListTicketsRequest(order_id=order.id)).tickets
    assert len(tickets) == 2 and all(len(ticket.code) == 130 for ticket in tickets)

    device = organizer.checkin.CreateScanner(
        checkin_pb2.CreateScannerRequest(event_id=server["eventId"], name="gate A (python)")
    )
    with Client(server["grpcTarget"], token=device.token) as scanner:
        first = scanner.checkin.Redeem(checkin_pb2.RedeemRequest(code=tickets[0].code, gate="A"))
        again = scanner.checkin.Redeem(checkin_pb2.RedeemRequest(code=tickets[0].code, gate="B"))
    assert first.result == checkin_pb2.REDEEM_RESULT_ACCEPTED
    assert again.result == checkin_pb2.REDEEM_RESULT_ALREADY_CHECKED_IN
    assert again.first_checkin.gate == "A"


def test_joins_the_waiting_room_and_orders_with_the_admission(customer: Client, server: dict[str, Any]) -> None:
    event_id = server["roomEventId"]

    def buy(admission_token: str) -> orders_pb2.Order:
        return customer.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(
                event_id=event_id,
                items=[orders_pb2.OrderItem(ticket_category_id=server["roomCategoryId"], quantity=1)],
                request_id=str(uuid.uuid4()),
                admission_token=admission_token,
            )
        )

    with pytest.raises(ApiError) as not_admitted:
        buy("")
    assert not_admitted.value.reason == "ADMISSION_REQUIRED"

    challenge = customer.waiting_room.GetChallenge(waiting_room_pb2.GetChallengeRequest(event_id=event_id))
    entry = customer.waiting_room.JoinQueue(
        waiting_room_pb2.JoinQueueRequest(event_id=event_id, altcha=solve(challenge))
    )
    assert entry.status in (waiting_room_pb2.QUEUE_ENTRY_STATUS_WAITING, waiting_room_pb2.QUEUE_ENTRY_STATUS_ADMITTED)

    # The entry as the server pushes it, up to the worker's admission.
    admitted = next(
        pushed
        for pushed in customer.watch_queue_entry(event_id, entry.id)
        if pushed.status == waiting_room_pb2.QUEUE_ENTRY_STATUS_ADMITTED
    )
    admission = admitted.admission
    assert admission.token and admission.HasField("expire_time")
    assert buy(admission.token).status == orders_pb2.ORDER_STATUS_PENDING


def test_watches_availability_past_the_call_deadline(customer: Client, server: dict[str, Any]) -> None:
    def left(update: catalog_pb2.AvailabilityUpdate) -> int:
        return next(c.available for c in update.categories if c.ticket_category_id == server["categoryId"])

    with Client(server["grpcTarget"], deadline_seconds=1.0) as watcher:
        updates = watcher.watch_availability(server["eventId"])
        before = left(next(updates))
        time.sleep(1.5)  # past the client's 1 s call deadline: a live stream has none
        customer.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(
                event_id=server["eventId"],
                items=[orders_pb2.OrderItem(ticket_category_id=server["categoryId"], quantity=1)],
                request_id=str(uuid.uuid4()),
            )
        )
        assert any(left(update) < before for update in updates)


def test_a_refusal_carries_its_reason_and_metadata(customer: Client, server: dict[str, Any]) -> None:
    def buy_the_one_seat() -> orders_pb2.Order:
        return customer.orders.CreateOrder(
            orders_pb2.CreateOrderRequest(
                event_id=server["eventId"],
                items=[orders_pb2.OrderItem(ticket_category_id=server["tinyCategoryId"], quantity=1)],
                request_id=str(uuid.uuid4()),
            )
        )

    buy_the_one_seat()
    with pytest.raises(ApiError) as refused:
        buy_the_one_seat()
    assert refused.value.code == grpc.StatusCode.ABORTED
    assert refused.value.reason == "SOLD_OUT"
    assert refused.value.metadata["ticketCategoryId"] == server["tinyCategoryId"]


def test_missing_and_wrong_credentials_are_named(anonymous: Client, server: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as unauthenticated:
        anonymous.orders.ListOrders(orders_pb2.ListOrdersRequest())
    assert unauthenticated.value.code == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(ApiError) as wrong:
        anonymous.auth.IssueToken(auth_pb2.IssueTokenRequest(email=server["customer"]["email"], password="wrong"))
    assert wrong.value.reason == "INVALID_CREDENTIALS"


def test_an_internal_tool_exports_an_events_sales_with_an_api_key(organizer: Client, server: dict[str, Any]) -> None:
    """The README's example: an organizer makes a key once; the tool, holding
    only the key, builds the event's sales report and downloads its CSV."""
    created = organizer.auth.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(
            name="nightly sales export",
            scopes=[auth_pb2.API_KEY_SCOPE_EVENTS_READ, auth_pb2.API_KEY_SCOPE_REPORTS],
        )
    )
    assert created.secret.startswith("tk_")

    with Client(server["grpcTarget"], api_key=created.secret) as tool:
        event = tool.catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=server["eventId"]))
        report = tool.reports.CreateReport(reports_pb2.CreateReportRequest(event_id=event.id))

        def ready() -> reports_pb2.Report | None:
            current = tool.reports.GetReport(reports_pb2.GetReportRequest(event_id=event.id, report_id=report.id))
            return current if current.status == reports_pb2.REPORT_STATUS_READY else None

        done = eventually(ready, "the report to be ready")
        request = urllib.request.Request(
            server["apiUrl"] + done.download_url, headers={"authorization": f"Bearer {created.secret}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            csv = response.read().decode()
        assert csv.splitlines()[0] == "section,key,name,value", csv[:200]

        # The key has no scope to buy with, whatever its creator could do.
        with pytest.raises(ApiError) as refused:
            tool.orders.CreateOrder(
                orders_pb2.CreateOrderRequest(
                    event_id=event.id,
                    items=[orders_pb2.OrderItem(ticket_category_id=server["categoryId"], quantity=1)],
                    request_id=str(uuid.uuid4()),
                )
            )
        assert refused.value.reason == "API_KEY_SCOPE_MISSING"
