// The gRPC ceiling under the same load generator: the server's own
// grpc.health.v1.Health/Check (trivial, no database) at the check-in
// scenario's arrival rate, so the table shows what k6's gRPC client and the
// transport cost by themselves at that rate.
//   k6 run -e GRPC_ADDR=127.0.0.1:8080 -e RATE=4000 -e DURATION=10s loadtest/ceiling_grpc.js
import { CALLS_PER_ITERATION, groupedArrivals, grpcInvokeAsync, TREND_STATS } from './lib/common.js';

export const options = {
  // Started CALLS_PER_ITERATION at a time, as checkin.js starts its scans.
  scenarios: { health: groupedArrivals(Number(__ENV.RATE || 4000), __ENV.DURATION || '10s', 50, 200) },
  summaryTrendStats: TREND_STATS,
};

export default async function () {
  const calls = [];
  for (let i = 0; i < CALLS_PER_ITERATION; i++) {
    calls.push(grpcInvokeAsync('grpc.health.v1.Health/Check', {}, { tags: { name: 'Check' }, discardResponseMessage: true }));
  }
  await Promise.all(calls);
}
