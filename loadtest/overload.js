// Overload: order creation offered far past what the machine can take,
// while the gates keep scanning at a modest rate. Shows what overload
// control promises: admitted requests keep a bounded p99, the rest are shed
// at once (503 + Retry-After), check-in is shed last.
//   k6 run -e BASE_URL=... -e JWT_SECRET=... -e DATA_FILE=checkin.json -e RATE=3000 loadtest/overload.js
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { BASE_URL, arrivals, grpcVu, mintToken, requestKey } from './lib/common.js';

const seeded = JSON.parse(open(__ENV.DATA_FILE));
const codes = new SharedArray('codes', () => JSON.parse(open(__ENV.DATA_FILE)).codes);
const admitted = new Trend('order_admitted_duration', true);
const shed = new Trend('order_shed_duration', true);
const shedWithoutRetryAfter = new Counter('shed_without_retry_after');
const scanned = new Counter('checkins_accepted');
const scanFailed = new Counter('checkins_failed');
let token;

export const options = {
  scenarios: {
    buyers: arrivals(Number(__ENV.RATE || 3000), __ENV.DURATION || '20s', 200, 600, 'buy'),
    gates: arrivals(Number(__ENV.SCAN_RATE || 50), __ENV.DURATION || '20s', 10, 50, 'scan'),
  },
  thresholds: { checkins_failed: ['count<1'], shed_without_retry_after: ['count<1'] },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export function buy() {
  if (!token) token = mintToken(seeded.customer_id, 'customer');
  const body = { eventId: seeded.event_id, items: [{ ticketCategoryId: seeded.ticket_category_id, quantity: 1 }] };
  const response = http.post(`${BASE_URL}/v1/orders`, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'Idempotency-Key': requestKey() },
    tags: { name: 'CreateOrder' },
    responseCallback: http.expectedStatuses(201, 503),
  });
  if (response.status === 201) admitted.add(response.timings.duration);
  else if (response.status === 503) {
    shed.add(response.timings.duration);
    if (!response.headers['Retry-After']) shedWithoutRetryAfter.add(1);
  }
}

export function scan() {
  const client = grpcVu();
  const code = codes[exec.scenario.iterationInTest % codes.length];
  const response = client.invoke(
    'ticketing.v1.CheckInService/Redeem',
    { code, gate: 'main' },
    { metadata: { authorization: `Bearer ${seeded.scanner_tokens[0]}` }, tags: { name: 'Redeem' } },
  );
  if (response.status === grpc.StatusOK && response.message.result === 'REDEEM_RESULT_ACCEPTED') scanned.add(1);
  else scanFailed.add(1);
}
