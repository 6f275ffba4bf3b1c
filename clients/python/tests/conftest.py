"""The server these tests run against, described by the Rust integration test
that started it (facade/tests/integration/clients.rs)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any, Callable, Iterator, TypeVar

import altcha
import pytest
from google.protobuf import json_format

from ticketing.v1 import waiting_room_pb2
from ticketing_client import Client

T = TypeVar("T")


@pytest.fixture(scope="session")
def server() -> dict[str, Any]:
    path = os.environ.get("TICKETING_FIXTURE")
    if not path:
        pytest.fail("TICKETING_FIXTURE is not set: these tests run from the Rust integration test `clients`")
    with open(path, encoding="utf-8") as file:
        description: dict[str, Any] = json.load(file)
    return description


def _client(server: dict[str, Any], who: str | None) -> Iterator[Client]:
    with Client(server["grpcTarget"]) as client:
        if who:
            client.login(server[who]["email"], server[who]["password"])
        yield client


@pytest.fixture
def anonymous(server: dict[str, Any]) -> Iterator[Client]:
    yield from _client(server, None)


@pytest.fixture
def customer(server: dict[str, Any]) -> Iterator[Client]:
    yield from _client(server, "customer")


@pytest.fixture
def organizer(server: dict[str, Any]) -> Iterator[Client]:
    yield from _client(server, "organizer")


def settle(server: dict[str, Any], order_id: str) -> None:
    """Settles the order's payment in the Midtrans simulator, as a buyer would."""
    request = urllib.request.Request(
        f"{server['simUrl']}/_sim/transactions/{order_id}/settle",
        data=b"{}",
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.read()


def solve(challenge: waiting_room_pb2.AltchaChallenge) -> str:
    """The ALTCHA widget's value for a waiting-room challenge, solved with
    ALTCHA's own library: the message's JSON is the challenge as ALTCHA reads it."""
    as_json = json_format.MessageToDict(challenge, always_print_fields_with_no_presence=True)
    parsed = altcha.Challenge.from_dict(as_json)
    solution = altcha.solve_challenge(parsed, timeout=30)
    assert solution is not None, "the challenge was solved in time"
    return altcha.Payload(parsed, solution).to_base64()


def eventually(check: Callable[[], T | None], what: str) -> T:
    for _ in range(100):
        value = check()
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")
