// Flash sale: thousands of buyers on one hot category (the seed's `Flash`
// stock, or CATEGORY_ID) until it is sold out, order creation over REST or
// gRPC (PROTOCOL=rest|grpc), at a fixed arrival rate.
//   k6 run -e BASE_URL=... -e JWT_SECRET=... -e DATA_FILE=seed.json -e RATE=1500 -e DURATION=20s loadtest/flash_sale.js
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { Counter } from 'k6/metrics';
import { arrivals, BASE_URL, checkStatus, customerIds, errorReason, grpcInvoke, mintToken, pick, requestKey, seeded, TREND_STATS } from './lib/common.js';

const PROTOCOL = __ENV.PROTOCOL || 'rest';
const accepted = new Counter('orders_accepted');
const soldOut = new Counter('orders_sold_out');

export const options = {
  discardResponseBodies: false,
  scenarios: {
    flash_sale: arrivals(Number(__ENV.RATE || 1500), __ENV.DURATION || '20s', Number(__ENV.VUS || 200), Number(__ENV.MAX_VUS || 400)),
  },
  // Latency of admitted answers (201/409) apart from shed ones (503).
  thresholds: { http_req_failed: ['rate<0.01'], 'http_req_duration{expected_response:true}': ['p(99)<1000'] },
  summaryTrendStats: TREND_STATS,
};

let token;

// CATEGORY_ID: another category of the same stock (ci/bench flash_sale_unlimited).
const CATEGORY_ID = __ENV.CATEGORY_ID || seeded.flash_category_id;

function body() {
  return {
    eventId: seeded.event_id,
    items: [{ ticketCategoryId: CATEGORY_ID, quantity: 1 + Math.floor(Math.random() * 4) }],
  };
}

function viaRest() {
  const response = http.post(`${BASE_URL}/v1/orders`, JSON.stringify(body()), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'Idempotency-Key': requestKey() },
    tags: { name: 'CreateOrder' },
    responseCallback: http.expectedStatuses(201, 409),
  });
  checkStatus(response, [201, 409], 'order accepted or sold out');
  if (response.status === 201) accepted.add(1);
  else if (errorReason(response.body) === 'SOLD_OUT') soldOut.add(1);
}

function viaGrpc() {
  const request = Object.assign(body(), { requestId: requestKey() });
  const response = grpcInvoke('ticketing.v1.OrderService/CreateOrder', request, {
    metadata: { authorization: `Bearer ${token}` },
    tags: { name: 'CreateOrder' },
  });
  if (response.status === grpc.StatusOK) accepted.add(1);
  else if (response.status === grpc.StatusAborted) soldOut.add(1);
}

// BUYERS=crowd (default): each order from one of the 10,000 seeded customers
// at random, as a sale's thousands of buyers order once or twice each.
// BUYERS=vu: each VU buys as one customer all along (a few hundred accounts
// ordering dozens of times: what the per-customer counts see is then far
// from a real sale's).
const BUYERS = __ENV.BUYERS || 'crowd';

export default function () {
  if (BUYERS === 'crowd' || !token) token = mintToken(pick(customerIds), 'customer');
  if (PROTOCOL === 'grpc') viaGrpc();
  else viaRest();
}
