#!/usr/bin/env python3
"""Checks the Midtrans simulator with Midtrans's official Python SDK (`midtransclient`).

The SDK is an outside witness: if it can create a Snap transaction and read its status
from the simulator, the simulator accepts what a real Midtrans client sends and answers
in a shape that client understands.

Usage:
    python3 -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install midtransclient
    /tmp/sdkvenv/bin/python sdk_check.py http://127.0.0.1:PORT SERVER_KEY

Prints "ok" and exits 0, or says what failed and exits 1 (2 for bad usage).
"""

import hashlib
import json
import sys
import urllib.request
import uuid

import midtransclient


def point_at_simulator(client, base_url):
    """Sends this client's calls to the simulator instead of the Midtrans sandbox.

    The SDK has no base-URL parameter, but ApiConfig reads the sandbox URLs through
    `self` (`self.SNAP_SANDBOX_BASE_URL`), so setting them on this client's own config
    object redirects this client only, without patching the SDK's classes.
    """
    client.api_config.SNAP_SANDBOX_BASE_URL = base_url + "/snap/v1"
    client.api_config.CORE_SANDBOX_BASE_URL = base_url
    return client


def expected_signature(order_id, status_code, gross_amount, server_key):
    payload = order_id + status_code + gross_amount + server_key
    return hashlib.sha512(payload.encode()).hexdigest()


def admin(base_url, path, body):
    """The simulator's own admin API (what a customer's payment does at Midtrans)."""
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def paid(snap, base_url, action, body):
    """A new transaction, paid (or captured) as `body` says; returns its order_id."""
    order_id = "sdk-check-" + uuid.uuid4().hex[:16]
    snap.create_transaction({"transaction_details": {"order_id": order_id, "gross_amount": 150000}})
    admin(base_url, f"/_sim/transactions/{order_id}/{action}", dict(body, notify=False))
    return order_id


def check_refunds_and_challenges(snap, core, base_url):
    """Partial refunds by refund_key, refusals for methods refunded by hand, and the
    approve/deny decisions on a challenged card capture, as the SDK calls them."""
    order_id = paid(snap, base_url, "settle", {"payment_type": "gopay"})
    part = {"refund_key": "sdk-r1", "amount": 50000, "reason": "one ticket"}
    first = core.transactions.refund(order_id, part)
    check(first.get("transaction_status") == "partial_refund", f"partial refund answered {first}")
    again = core.transactions.refund(order_id, part)
    check(again == first, "the same refund_key replays the first answer")
    rest = core.transactions.refund(order_id, {"refund_key": "sdk-r2", "amount": 100000})
    check(rest.get("transaction_status") == "refund", f"the rest refunded: {rest}")

    transfer = paid(snap, base_url, "settle", {"payment_type": "bank_transfer"})
    try:
        core.transactions.refund(transfer, {"refund_key": "sdk-r3", "amount": 150000})
    except midtransclient.error_midtrans.MidtransAPIError as error:
        check(error.http_status_code == 412, f"a bank transfer refund gave HTTP {error.http_status_code}")
    else:
        raise AssertionError("a bank transfer was refunded by API")

    challenge = {"fraud_status": "challenge", "payment_type": "credit_card"}
    approved = paid(snap, base_url, "capture", challenge)
    answer = core.transactions.approve(approved)
    check(answer.get("fraud_status") == "accept" and answer.get("status_code") == "200", f"approve answered {answer}")
    denied = paid(snap, base_url, "capture", challenge)
    answer = core.transactions.deny(denied)
    check(answer.get("transaction_status") == "deny", f"deny answered {answer}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(base_url, server_key):
    snap = point_at_simulator(midtransclient.Snap(is_production=False, server_key=server_key), base_url)
    core = point_at_simulator(midtransclient.CoreApi(is_production=False, server_key=server_key), base_url)
    order_id = "sdk-check-" + uuid.uuid4().hex[:16]

    created = snap.create_transaction({
        "transaction_details": {"order_id": order_id, "gross_amount": 150000},
        "item_details": [{"id": "ticket", "price": 75000, "quantity": 2, "name": "Ticket"}],
        "customer_details": {"first_name": "Sdk", "email": "sdk@example.com"},
    })
    token = created.get("token")
    check(token, f"no token in {created}")
    check(str(created.get("redirect_url", "")).endswith("/snap/v4/redirection/" + token),
          f"unexpected redirect_url in {created}")

    status = core.transactions.status(order_id)
    check(status.get("order_id") == order_id, f"order_id in {status}")
    check(status.get("gross_amount") == "150000.00", f"gross_amount in {status}")
    check(status.get("transaction_status") == "pending", f"transaction_status in {status}")
    check(status.get("status_code") == "201", f"status_code in {status}")
    signature = expected_signature(order_id, status["status_code"], status["gross_amount"], server_key)
    check(status.get("signature_key") == signature, f"signature_key in {status}")

    # The SDK's documented way to verify a notification: it re-reads the status by
    # transaction_id, which Midtrans accepts in place of the order_id.
    verified = core.transactions.notification(status)
    check(verified.get("order_id") == order_id, f"notification() answered {verified}")

    # A wrong key must surface as the SDK's API error carrying HTTP 401.
    wrong = point_at_simulator(midtransclient.CoreApi(is_production=False, server_key=server_key + "-wrong"), base_url)
    try:
        wrong.transactions.status(order_id)
    except midtransclient.error_midtrans.MidtransAPIError as error:
        check(error.http_status_code == 401, f"wrong key gave HTTP {error.http_status_code}")
    else:
        raise AssertionError("a wrong server key was accepted")

    check_refunds_and_challenges(snap, core, base_url)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base_url, server_key = argv[1].rstrip("/"), argv[2]
    try:
        run(base_url, server_key)
    except Exception as error:  # any failure, including the SDK's own errors, fails the check
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
