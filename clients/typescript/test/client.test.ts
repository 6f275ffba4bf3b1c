// The TypeScript client against the real server over gRPC-Web (tonic-web).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { toJson } from "@bufbuild/protobuf";
import { pbkdf2, solveChallenge, type Challenge } from "altcha/lib";

import {
  AltchaChallengeSchema,
  Code,
  OrderStatus,
  QueueEntryStatus,
  RedeemResult,
  apiError,
  createTicketingClient,
  type AltchaChallenge,
} from "../src/index.js";
import { eventually, fixture, settle } from "./fixture.js";

test("lists the published events", async () => {
  const api = createTicketingClient({ baseUrl: fixture.apiUrl });
  const { events } = await api.catalog.listEvents({ pageSize: 50 });
  const event = events.find((e) => e.id === fixture.eventId);
  assert.ok(event, "the fixture's event is listed");
  const detail = await api.catalog.getEvent({ eventId: fixture.eventId });
  assert.ok(detail.ticketCategories.some((c) => c.id === fixture.categoryId));
});

test("buys a ticket, pays through the simulator and redeems it once", async () => {
  const customer = createTicketingClient({ baseUrl: fixture.apiUrl });
  await customer.login(fixture.customer.email, fixture.customer.password);
  const order = await customer.orders.createOrder({
    eventId: fixture.eventId,
    items: [{ ticketCategoryId: fixture.categoryId, quantity: 1 }],
    requestId: randomUUID(),
  });
  assert.equal(order.status, OrderStatus.PENDING);
  const payment = await customer.payments.createPayment({ orderId: order.id });
  assert.ok(payment.token, "a Snap token");

  await settle(order.id);
  await eventually(async () => {
    const current = await customer.orders.getOrder({ orderId: order.id });
    return current.status === OrderStatus.PAID ? current : undefined;
  }, "the order to be paid");
  const { tickets } = await customer.orders.listTickets({ orderId: order.id });
  assert.equal(tickets.length, 1);
  assert.equal(tickets[0].code.length, 130);

  const organizer = createTicketingClient({ baseUrl: fixture.apiUrl });
  await organizer.login(fixture.organizer.email, fixture.organizer.password);
  const device = await organizer.checkin.createScanner({ eventId: fixture.eventId, name: "gate A (node)" });
  const scanner = createTicketingClient({ baseUrl: fixture.apiUrl, token: device.token });
  const first = await scanner.checkin.redeem({ code: tickets[0].code, gate: "A", scanId: randomUUID() });
  assert.equal(first.result, RedeemResult.ACCEPTED);
  const again = await scanner.checkin.redeem({ code: tickets[0].code, gate: "B", scanId: randomUUID() });
  assert.equal(again.result, RedeemResult.ALREADY_CHECKED_IN);
  assert.equal(again.firstCheckin?.gate, "A");
});

/** The ALTCHA widget's value, solved with ALTCHA's own library: the message's JSON is its challenge. */
async function solve(challenge: AltchaChallenge): Promise<string> {
  const parsed = toJson(AltchaChallengeSchema, challenge, { alwaysEmitImplicit: true }) as unknown as Challenge;
  const solution = await solveChallenge({ challenge: parsed, deriveKey: pbkdf2.deriveKey });
  assert.ok(solution, "the challenge was solved");
  return btoa(JSON.stringify({ challenge: parsed, solution }));
}

test("joins the waiting room, waits to be admitted and orders with the admission", async () => {
  const customer = createTicketingClient({ baseUrl: fixture.apiUrl });
  await customer.login(fixture.customer.email, fixture.customer.password);
  const eventId = fixture.roomEventId;
  const buy = (admissionToken: string) =>
    customer.orders.createOrder({
      eventId,
      items: [{ ticketCategoryId: fixture.roomCategoryId, quantity: 1 }],
      requestId: randomUUID(),
      admissionToken,
    });
  const refused = await buy("").then(
    () => assert.fail("the room's event sells to admitted customers only"),
    (e: unknown) => apiError(e),
  );
  assert.equal(refused.reason, "ADMISSION_REQUIRED");

  const challenge = await customer.waitingRoom.getChallenge({ eventId });
  const entry = await customer.waitingRoom.joinQueue({ eventId, altcha: await solve(challenge) });
  assert.ok([QueueEntryStatus.WAITING, QueueEntryStatus.ADMITTED].includes(entry.status), `joined: ${entry.status}`);
  const admitted = await eventually(async () => {
    const current = await customer.waitingRoom.getQueueEntry({ eventId, queueEntryId: entry.id });
    return current.status === QueueEntryStatus.ADMITTED ? current : undefined;
  }, "the worker to admit the entry");
  assert.ok(admitted.admission?.token && admitted.admission.expireTime, "an admission with its expiry");

  const order = await buy(admitted.admission.token);
  assert.equal(order.status, OrderStatus.PENDING);
});

test("a failed call carries the ErrorInfo reason and metadata", async () => {
  const customer = createTicketingClient({ baseUrl: fixture.apiUrl });
  await customer.login(fixture.customer.email, fixture.customer.password);
  const buyTheSeat = () =>
    customer.orders.createOrder({
      eventId: fixture.eventId,
      items: [{ ticketCategoryId: fixture.tinyCategoryId, quantity: 1 }],
      requestId: randomUUID(),
    });
  await buyTheSeat();
  const error = await buyTheSeat().then(
    () => assert.fail("the only seat was sold"),
    (e: unknown) => apiError(e),
  );
  assert.equal(error.code, Code.Aborted);
  assert.equal(error.reason, "SOLD_OUT");
  assert.equal(error.metadata.ticketCategoryId, fixture.tinyCategoryId);
});

test("a call without a token is refused and a bad password named", async () => {
  const anonymous = createTicketingClient({ baseUrl: fixture.apiUrl });
  const unauthenticated = await anonymous.orders.listOrders({}).then(
    () => assert.fail("orders need a token"),
    (e: unknown) => apiError(e),
  );
  assert.equal(unauthenticated.code, Code.Unauthenticated);
  const wrongPassword = await anonymous.login(fixture.customer.email, "not the password").then(
    () => assert.fail("a wrong password logs nobody in"),
    (e: unknown) => apiError(e),
  );
  assert.equal(wrongPassword.reason, "INVALID_CREDENTIALS");
});

test("watches availability over a gRPC-Web server stream: the current state, then a sale's drop", async () => {
  const watcher = createTicketingClient({ baseUrl: fixture.apiUrl, timeoutMs: 2_000 });
  const stop = new AbortController();
  const updates = watcher.watchAvailability(fixture.eventId, { signal: stop.signal });
  const left = (update: { categories: { ticketCategoryId: string; available: number }[] }) =>
    update.categories.find((c) => c.ticketCategoryId === fixture.categoryId)?.available ?? -1;
  const first = await updates.next();
  assert.ok(!first.done);
  const before = left(first.value);
  assert.ok(before >= 1, `available: ${before}`);

  const customer = createTicketingClient({ baseUrl: fixture.apiUrl });
  await customer.login(fixture.customer.email, fixture.customer.password);
  await customer.orders.createOrder({
    eventId: fixture.eventId,
    items: [{ ticketCategoryId: fixture.categoryId, quantity: 1 }],
    requestId: randomUUID(),
  });
  // Past the client's 2 s call deadline too: a live stream has none.
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  for await (const update of updates) {
    if (left(update) < before) break;
  }
  stop.abort();
});
