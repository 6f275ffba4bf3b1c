// Gates on the night: distinct valid ticket codes redeemed over gRPC by many
// virtual scanners (device tokens), at a fixed arrival rate.
//   ticketing seed --bench --tickets 200000 > seed.json
//   k6 run -e GRPC_ADDR=127.0.0.1:8080 -e DATA_FILE=seed.json -e RATE=4000 -e DURATION=20s loadtest/checkin.js
// Each code is scanned once (scan n takes code n), so every answer
// should be ACCEPTED; REPEAT=0.1 rescans a tenth of them to mix in
// ALREADY_CHECKED_IN.
// The arrivals ramp up over WARMUP_SECONDS (3) first: the ramp's calls are
// tagged phase=warmup and the figures (`{phase:measured}`) leave them out.
import grpc from 'k6/net/grpc';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { CALLS_PER_ITERATION, codeAt, codes, grpcInvokeAsync, phase, scannerTokens, TREND_STATS, warmedUpGroupedArrivals } from './lib/common.js';

const results = {
  ACCEPTED: new Counter('redeem_accepted'),
  ALREADY_CHECKED_IN: new Counter('redeem_already_checked_in'),
  OTHER: new Counter('redeem_other_result'),
};
const errors = new Counter('redeem_errors');
const REPEAT = Number(__ENV.REPEAT || 0);
const COUNT_RESULTS = (__ENV.COUNT_RESULTS || '1') !== '0';
const RATE = Number(__ENV.RATE || 4000);
// The ramp before the measured DURATION (lib/common.js warmedUpGroupedArrivals).
const WARMUP_SECONDS = Number(__ENV.WARMUP_SECONDS || 3);

export const options = {
  scenarios: {
    // RATE scans/s, started CALLS_PER_ITERATION at a time (lib/common.js),
    // after a warm-up whose calls the figures leave out.
    gates: warmedUpGroupedArrivals(
      RATE,
      `${WARMUP_SECONDS}s`,
      __ENV.DURATION || '20s',
      Number(__ENV.VUS || 50),
      Number(__ENV.MAX_VUS || 200),
    ),
  },
  thresholds: { redeem_errors: ['count<1'], 'grpc_req_duration{name:Redeem,phase:measured}': ['p(99)<50'] },
  summaryTrendStats: TREND_STATS,
};

// Per phase and scanner device, the call's options, built once per VU: a
// SharedArray element is decoded on every read, and the options object is the
// same for every scan of a device in a phase.
const scannerCalls = Object.fromEntries(
  ['warmup', 'measured'].map((phase) => [
    phase,
    Array.from(scannerTokens, (token) => ({
      metadata: { authorization: `Bearer ${token}` },
      tags: { name: 'Redeem', phase },
      // Decoding every answer into JS costs k6 a third of its CPU; with
      // COUNT_RESULTS=0 the mix comes from the server's ticketing_checkins_total.
      discardResponseMessage: !COUNT_RESULTS,
    })),
  ]),
);
const GATES = Array.from({ length: 8 }, (_, i) => `gate-${i}`);

// One scan by one of the scanner devices; scan n redeems code n.
async function scan(n, calls) {
  const rescan = REPEAT > 0 && Math.random() < REPEAT && n > 0;
  const code = codeAt(codes, rescan ? Math.floor(Math.random() * n) : n);
  const response = await grpcInvokeAsync(
    'ticketing.v1.CheckInService/Redeem',
    { code, gate: GATES[n % GATES.length] },
    calls[n % calls.length],
  );
  if (response.status !== grpc.StatusOK) {
    errors.add(1);
    return;
  }
  if (COUNT_RESULTS) {
    const result = (response.message.result || '').replace('REDEEM_RESULT_', '');
    (results[result] || results.OTHER).add(1);
  }
}

export default async function () {
  const first = exec.scenario.iterationInTest * CALLS_PER_ITERATION;
  const calls = scannerCalls[phase(WARMUP_SECONDS * 1000)];
  const scans = [];
  for (let i = 0; i < CALLS_PER_ITERATION; i++) scans.push(scan(first + i, calls));
  await Promise.all(scans);
}
