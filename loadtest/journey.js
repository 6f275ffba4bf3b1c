// The whole way through, one buyer per iteration: browse → CreateOrder →
// CreatePayment (Snap on the Midtrans simulator) → the simulator settles and
// notifies the webhook → the order is PAID → its tickets → Redeem over gRPC.
//   k6 run -e BASE_URL=... -e SIM_URL=... -e JWT_SECRET=... -e DATA_FILE=seed.json loadtest/journey.js
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { arrivals, BASE_URL, checkStatus, grpcInvoke, mintToken, requestKey, scannerTokens, seeded, TREND_STATS } from './lib/common.js';

const completed = new Counter('journeys_completed');
const failed = new Counter('journeys_failed');
const journey = new Trend('journey_duration', true);
const toPaid = new Trend('payment_to_paid_duration', true);

export const options = {
  scenarios: {
    journeys: arrivals(Number(__ENV.RATE || 20), __ENV.DURATION || '20s', 50, 300),
  },
  thresholds: { journeys_failed: ['count<1'], http_req_failed: ['rate<0.001'] },
  summaryTrendStats: TREND_STATS,
};

function json(response) {
  try {
    return JSON.parse(response.body);
  } catch (e) {
    return {};
  }
}

function fail(step) {
  failed.add(1, { step });
}

export default function () {
  const started = Date.now();
  const token = mintToken(seeded.customer_id, 'customer');
  const auth = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
  checkStatus(http.get(`${BASE_URL}/v1/events?pageSize=20`, { tags: { name: 'ListEvents' } }), [200], 'list');
  checkStatus(http.get(`${BASE_URL}/v1/events/${seeded.event_id}`, { tags: { name: 'GetEvent' } }), [200], 'detail');

  const quantity = 1 + Math.floor(Math.random() * 2);
  const body = { eventId: seeded.event_id, items: [{ ticketCategoryId: seeded.ticket_category_id, quantity }] };
  const order = http.post(`${BASE_URL}/v1/orders`, JSON.stringify(body), {
    headers: Object.assign({ 'Idempotency-Key': requestKey() }, auth),
    tags: { name: 'CreateOrder' },
  });
  if (!checkStatus(order, [201], 'order created')) return fail('order');
  const orderId = json(order).id;

  const payment = http.post(`${BASE_URL}/v1/orders/${orderId}/payments`, null, { headers: auth, tags: { name: 'CreatePayment' } });
  if (!checkStatus(payment, [201], 'payment created')) return fail('payment');

  // The customer pays on the Snap page; the simulator settles and notifies.
  const paidAt = Date.now();
  const settle = http.post(`${__ENV.SIM_URL}/_sim/transactions/${orderId}/settle`, '{}', { tags: { name: 'SimulatorSettle' } });
  if (!checkStatus(settle, [200], 'settled')) return fail('settle');
  let paid = false;
  for (let i = 0; i < 50 && !paid; i++) {
    const read = http.get(`${BASE_URL}/v1/orders/${orderId}`, { headers: auth, tags: { name: 'GetOrder' } });
    paid = json(read).status === 'ORDER_STATUS_PAID';
    if (!paid) sleep(0.1);
  }
  if (!paid) return fail('paid');
  toPaid.add(Date.now() - paidAt);

  const tickets = json(http.get(`${BASE_URL}/v1/orders/${orderId}/tickets`, { headers: auth, tags: { name: 'ListTickets' } })).tickets || [];
  if (tickets.length !== quantity) return fail('tickets');

  for (const ticket of tickets) {
    const scan = grpcInvoke(
      'ticketing.v1.CheckInService/Redeem',
      { code: ticket.code, gate: 'journey' },
      { metadata: { authorization: `Bearer ${scannerTokens[__VU % scannerTokens.length]}` }, tags: { name: 'Redeem' } },
    );
    if (scan.status !== grpc.StatusOK || scan.message.result !== 'REDEEM_RESULT_ACCEPTED') return fail('redeem');
  }
  completed.add(1);
  journey.add(Date.now() - started);
}
