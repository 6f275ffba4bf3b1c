// Browsing: event list and detail, as the public does before a sale.
//   k6 run -e BASE_URL=... -e EVENT_IDS=id1,id2 [-e THINK=1] [-e VUS=50] [-e DURATION=15s] loadtest/browse.js
// THINK=0 (default) measures throughput; THINK=1 adds human pauses (1–3 s).
import http from 'k6/http';
import { sleep } from 'k6';
import { BASE_URL, checkStatus, pick } from './lib/common.js';

const eventIds = (__ENV.EVENT_IDS || '').split(',').filter((id) => id);

export const options = {
  vus: Number(__ENV.VUS || 50),
  duration: __ENV.DURATION || '15s',
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  thresholds: { http_req_failed: ['rate<0.001'] },
};

export default function () {
  if (Math.random() < 0.3 || eventIds.length === 0) {
    checkStatus(http.get(`${BASE_URL}/v1/events?pageSize=20`, { tags: { name: 'ListEvents' } }), [200], 'list');
  } else {
    const id = pick(eventIds);
    checkStatus(http.get(`${BASE_URL}/v1/events/${id}`, { tags: { name: 'GetEvent' } }), [200], 'detail');
  }
  if (__ENV.THINK === '1') sleep(1 + Math.random() * 2);
}
