// Shared by every scenario: configuration, tokens, ids and checks.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { check } from 'k6';
import exec from 'k6/execution';
import grpc from 'k6/net/grpc';
import { SharedArray } from 'k6/data';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const GRPC_ADDR = __ENV.GRPC_ADDR || BASE_URL.replace(/^https?:\/\//, '');
const JWT_SECRET = __ENV.JWT_SECRET || '';

function b64url(text) {
  return encoding.b64encode(text, 'rawurl');
}

// An HS256 access token for an existing account, minted here instead of
// logging in: logins are argon2-hashed and rate limited by design, which
// would measure the login path instead of the scenario.
export function mintToken(userId, role) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ sub: userId, role: role, iss: 'ticketing', iat: now, exp: now + 7200 }));
  const signature = crypto.hmac('sha256', JWT_SECRET, `${header}.${payload}`, 'base64rawurl');
  return `${header}.${payload}.${signature}`;
}

// Unique per request across VUs and iterations: an idempotency key.
export function requestKey() {
  return `k6-${__VU}-${__ITER}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// The reason clients branch on, from Google's JSON error form.
export function errorReason(body) {
  try {
    const details = JSON.parse(body).error.details || [];
    const info = details.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo');
    return info ? info.reason : '';
  } catch (e) {
    return '';
  }
}

export function checkStatus(response, expected, name) {
  return check(response, { [name]: (r) => expected.includes(r.status) });
}

// One gRPC connection per VU, made on its first call (reflection: no proto
// files needed).
const grpcClient = new grpc.Client();
let grpcConnected = false;
function connectedClient() {
  if (!grpcConnected) {
    grpcClient.connect(GRPC_ADDR, { plaintext: true, reflect: true });
    grpcConnected = true;
  }
  return grpcClient;
}
export function grpcInvoke(method, request, params) {
  return connectedClient().invoke(method, request, params);
}
// The same call, answered by a promise: several in flight from one iteration.
export function grpcInvokeAsync(method, request, params) {
  return connectedClient().asyncInvoke(method, request, params);
}

// gRPC calls started per iteration by the gRPC-heavy scenarios (checkin and
// its ceiling): k6's arrival-rate executor costs about as much CPU per
// iteration as the call itself, so starting calls in small groups offers the
// same calls/s for ~40 % less of k6's CPU on the cores it shares (measured:
// 4,000 health checks/s took k6 8.3 s of CPU in 10 s one per iteration, 5.1
// four per iteration). Eight: k6 at 69-71 % of a core instead of 78 % for
// 4,000 scans/s, and a lower check-in p99 in each of three alternated pairs
// of ci/bench runs (53 vs 60, 70 and 82 vs 95 ms on a slow day). Sixteen:
// k6's CPU for 80,000 scans 15.8-16.2 s instead of 17.3-17.5, p99 80 and 68
// vs 96 and 139 ms, in two alternated pairs (stop 16, a slow day), though
// each iteration's calls arrive together, a burstier load than eight.
export const CALLS_PER_ITERATION = Number(__ENV.CALLS_PER_ITERATION || 16);

// Trend statistics every script reports; `count` lets the results table
// count gRPC calls (k6 has no grpc_reqs counter) without a sample per call.
export const TREND_STATS = ['avg', 'p(50)', 'p(95)', 'p(99)', 'max', 'count'];

// A scenario at a fixed arrival rate per second (k6's open model: load does
// not slow down when the server does).
export function arrivals(rate, duration, preAllocatedVUs, maxVUs, exec) {
  const scenario = { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration, preAllocatedVUs, maxVUs };
  return exec ? Object.assign(scenario, { exec }) : scenario;
}

// Arrivals of CALLS_PER_ITERATION (or `group`) calls each, callRate calls/s in all. k6
// takes whole iterations per time unit, so they are counted per
// CALLS_PER_ITERATION seconds (3,000 calls/s would be 187.5 iterations a second).
export function groupedArrivals(callRate, duration, preAllocatedVUs, maxVUs, exec, group = CALLS_PER_ITERATION) {
  return Object.assign(arrivals(callRate, duration, preAllocatedVUs, maxVUs, exec), { timeUnit: `${group}s` });
}

// The same arrivals after a warm-up that ramps them up from none over
// `warmup`: each VU makes its gRPC connection (with reflection, tens of
// milliseconds of k6's CPU) while the load is light, as a scanner connects
// long before the doors open. Measured in stop 18: with the connections made
// in the first second at full rate, that second held ~95 % of the calls over
// 50 ms. Calls of the ramp are told apart by `phase()`.
export function warmedUpGroupedArrivals(callRate, warmup, duration, preAllocatedVUs, maxVUs) {
  return {
    executor: 'ramping-arrival-rate',
    startRate: 0,
    timeUnit: `${CALLS_PER_ITERATION}s`,
    preAllocatedVUs,
    maxVUs,
    stages: [
      { target: callRate, duration: warmup },
      { target: callRate, duration },
    ],
  };
}

// 'warmup' for an iteration started in the scenario's first `warmupMs`,
// 'measured' after: tag the calls with it, and read the figures of
// `{phase:measured}`.
export function phase(warmupMs) {
  return Date.now() - exec.scenario.startTime < warmupMs ? 'warmup' : 'measured';
}

// The n-th code of a scenario's share of the seeded codes: ci/bench gives each
// scenario its own CODE_OFFSET, so one scenario's scans never re-scan another's.
const CODE_OFFSET = Number(__ENV.CODE_OFFSET || 0);
export function codeAt(codes, n) {
  return codes[(CODE_OFFSET + n) % codes.length];
}

// The seed (`ticketing seed --bench` JSON, DATA_FILE). Each part is a
// SharedArray: the file is parsed once, not once per VU, and a VU copies only
// the elements it reads (a million codes would otherwise sit in every VU).
// One parse serves every part (their callbacks run at once, in the first
// VU's init); the parsed file is let go after the last.
let seedFile;
function fromSeed(name, part) {
  return new SharedArray(name, () => {
    if (!__ENV.DATA_FILE) return [];
    seedFile = seedFile || JSON.parse(open(__ENV.DATA_FILE));
    return part(seedFile);
  });
}
export const codes = fromSeed('codes', (seed) => seed.codes);
export const scannerTokens = fromSeed('scanner tokens', (seed) => seed.scanner_tokens);
export const customerIds = fromSeed('customers', (seed) => seed.customer_ids);
export const eventIds = fromSeed('events', (seed) => seed.event_ids);
// The scalars: event, categories, the buyer of the seeded tickets.
export const seeded = fromSeed('seed', (seed) => [
  {
    event_id: seed.event_id,
    ticket_category_id: seed.ticket_category_id,
    flash_category_id: seed.flash_category_id,
    customer_id: seed.customer_id,
  },
])[0] || {};
seedFile = undefined;
