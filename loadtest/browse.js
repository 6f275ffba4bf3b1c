// Browsing: the event list and event pages, as the public does before and
// during a sale; almost all of it is answered from the caches.
//   k6 run -e BASE_URL=... -e DATA_FILE=seed.json -e RATE=3000 -e DURATION=20s loadtest/browse.js
// Think time as arrivals: RATE page views a second stand for RATE × 10 people
// each pausing ~10 s between pages (the plan's rule of thumb), without k6
// paying for a VU per person.
import http from 'k6/http';
import { arrivals, BASE_URL, checkStatus, eventIds, pick, TREND_STATS } from './lib/common.js';

export const options = {
  scenarios: {
    browse: arrivals(Number(__ENV.RATE || 3000), __ENV.DURATION || '20s', 50, 300),
  },
  thresholds: { http_req_failed: ['rate<0.001'], http_req_duration: ['p(95)<200'] },
  summaryTrendStats: TREND_STATS,
};

export default function () {
  if (Math.random() < 0.3) {
    checkStatus(http.get(`${BASE_URL}/v1/events?pageSize=20`, { tags: { name: 'ListEvents' } }), [200], 'list');
  } else {
    const id = pick(eventIds);
    checkStatus(http.get(`${BASE_URL}/v1/events/${id}`, { tags: { name: 'GetEvent' } }), [200], 'detail');
  }
}
