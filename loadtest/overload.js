// Overload: order creation offered far past what the machine can take,
// while the gates keep scanning at a modest rate. Shows what overload
// control promises: admitted requests keep a bounded p99, the rest are shed
// at once (503 + Retry-After), check-in is shed last.
//   k6 run -e BASE_URL=... -e JWT_SECRET=... -e DATA_FILE=seed.json -e RATE=3000 loadtest/overload.js
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import { arrivals, BASE_URL, codeAt, codes, grpcInvoke, mintToken, requestKey, scannerTokens, seeded, TREND_STATS } from './lib/common.js';

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
  summaryTrendStats: TREND_STATS,
};

export function buy() {
  if (!token) token = mintToken(seeded.customer_id, 'customer');
  const body = { eventId: seeded.event_id, items: [{ ticketCategoryId: seeded.ticket_category_id, quantity: 1 }] };
  const response = http.post(`${BASE_URL}/v1/orders`, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'Idempotency-Key': requestKey() },
    tags: { name: 'CreateOrder' },
    responseCallback: http.expectedStatuses(201, 503),
  });
  if (response.status === 201) {
    admitted.add(response.timings.duration);
  } else if (response.status === 503) {
    shed.add(response.timings.duration);
    if (!response.headers['Retry-After']) shedWithoutRetryAfter.add(1);
  }
}

export function scan() {
  const code = codeAt(codes, exec.scenario.iterationInTest);
  const response = grpcInvoke(
    'ticketing.v1.CheckInService/Redeem',
    { code, gate: 'main' },
    { metadata: { authorization: `Bearer ${scannerTokens[0]}` }, tags: { name: 'Redeem' } },
  );
  if (response.status === grpc.StatusOK && response.message.result === 'REDEEM_RESULT_ACCEPTED') scanned.add(1);
  else scanFailed.add(1);
}
