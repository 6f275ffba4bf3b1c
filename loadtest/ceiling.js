// The machine's ceiling under the same load generator: a trivial axum handler
// (the admin listener's /healthz, same binary) as fast as k6 can drive it.
// ci/bench prints it beside the scenarios so a reader sees how close to the
// limit they run.
//   k6 run -e URL=http://127.0.0.1:ADMIN/healthz -e DURATION=10s loadtest/ceiling.js
import http from 'k6/http';
import { TREND_STATS } from './lib/common.js';

export const options = {
  vus: Number(__ENV.VUS || 64),
  duration: __ENV.DURATION || '10s',
  summaryTrendStats: TREND_STATS,
};

export default function () {
  http.get(__ENV.URL, { tags: { name: 'healthz' } });
}
