/**
 * Typed client for the ticketing.v1 API in browsers and Node, over Connect's
 * gRPC-Web transport (served by the facade through tonic-web). The service
 * descriptors are generated from proto/ by protoc-gen-es (`ci/gen-clients`);
 * this module adds what every caller needs: the bearer token on every call,
 * a default deadline, and the `google.rpc.ErrorInfo` reason of a failure.
 *
 *   const api = createTicketingClient({ baseUrl: "https://api.example" });
 *   await api.login("ana@example.com", "…");
 *   const { events } = await api.catalog.listEvents({});
 */
import { fromJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { AuthService } from "./gen/ticketing/v1/auth_pb.js";
import {
  AvailabilityUpdateSchema,
  CatalogService,
  type AvailabilityUpdate,
} from "./gen/ticketing/v1/catalog_pb.js";
import { CheckInService } from "./gen/ticketing/v1/checkin_pb.js";
import { OrderService } from "./gen/ticketing/v1/orders_pb.js";
import { PaymentService } from "./gen/ticketing/v1/payments_pb.js";
import { ReportService } from "./gen/ticketing/v1/reports_pb.js";
import { WaitingRoomService, type QueueEntry } from "./gen/ticketing/v1/waiting_room_pb.js";

export * from "./gen/ticketing/v1/auth_pb.js";
export * from "./gen/ticketing/v1/catalog_pb.js";
export * from "./gen/ticketing/v1/checkin_pb.js";
export * from "./gen/ticketing/v1/common_pb.js";
export * from "./gen/ticketing/v1/orders_pb.js";
export * from "./gen/ticketing/v1/payments_pb.js";
export * from "./gen/ticketing/v1/reports_pb.js";
export * from "./gen/ticketing/v1/waiting_room_pb.js";
export { Code, ConnectError };

export interface TicketingOptions {
  /** Where the service answers gRPC-Web, e.g. `https://api.tickets.example`. */
  baseUrl: string;
  /** A user's access token or a scanner's device token; `login` sets one. */
  token?: string;
  /**
   * An internal tool's API key (`tk_…`, from `CreateApiKey`) instead of a
   * token: it acts as the user who created it, within its scopes.
   */
  apiKey?: string;
  /** Deadline of each call unless the call sets its own (default 10 s). */
  timeoutMs?: number;
}

export interface TicketingClient {
  auth: Client<typeof AuthService>;
  catalog: Client<typeof CatalogService>;
  orders: Client<typeof OrderService>;
  payments: Client<typeof PaymentService>;
  checkin: Client<typeof CheckInService>;
  reports: Client<typeof ReportService>;
  waitingRoom: Client<typeof WaitingRoomService>;
  /**
   * An event's availability as it changes (WatchAvailability over gRPC-Web):
   * the current state first, then each change. No deadline: it lasts until
   * `signal` aborts it; when the server drains (UNAVAILABLE) it reconnects.
   */
  watchAvailability(eventId: string, options?: { signal?: AbortSignal }): AsyncGenerator<AvailabilityUpdate>;
  /**
   * The caller's queue entry as it moves, up to its admission (with the
   * token) and on until it expires; reconnects like `watchAvailability`.
   */
  watchQueueEntry(
    eventId: string,
    queueEntryId: string,
    options?: { signal?: AbortSignal },
  ): AsyncGenerator<QueueEntry>;
  /** Exchanges an e-mail and password for a token used from then on. */
  login(email: string, password: string): Promise<string>;
  token: string | undefined;
}

export function createTicketingClient(options: TicketingOptions): TicketingClient {
  if (options.token && options.apiKey) throw new Error("pass a token or an API key, not both");
  const session = { token: options.token ?? options.apiKey };
  const bearer: Interceptor = (next) => (request) => {
    if (session.token) request.header.set("authorization", `Bearer ${session.token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({
    baseUrl: options.baseUrl,
    interceptors: [bearer],
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
  });
  const auth = createClient(AuthService, transport);
  const catalog = createClient(CatalogService, transport);
  const waitingRoom = createClient(WaitingRoomService, transport);
  return {
    auth,
    catalog,
    orders: createClient(OrderService, transport),
    payments: createClient(PaymentService, transport),
    checkin: createClient(CheckInService, transport),
    reports: createClient(ReportService, transport),
    waitingRoom,
    watchAvailability(eventId, options = {}) {
      return reconnecting((signal) => catalog.watchAvailability({ eventId }, { timeoutMs: 0, signal }), options.signal);
    },
    watchQueueEntry(eventId, queueEntryId, options = {}) {
      return reconnecting(
        (signal) => waitingRoom.watchQueueEntry({ eventId, queueEntryId }, { timeoutMs: 0, signal }),
        options.signal,
      );
    },
    async login(email, password) {
      const issued = await auth.issueToken({ email, password });
      session.token = issued.accessToken;
      return issued.accessToken;
    },
    get token() {
      return session.token;
    },
    set token(value) {
      session.token = value;
    },
  };
}

/** What a failed call says: the gRPC code and the domain reason, if any. */
export interface ApiError {
  code: Code;
  message: string;
  /** `ErrorInfo.reason`: SOLD_OUT, RATE_LIMITED, OVERLOADED, … */
  reason?: string;
  metadata: Record<string, string>;
}

export function apiError(error: unknown): ApiError {
  const connectError = ConnectError.from(error);
  const [info] = connectError.findDetails(ErrorInfoSchema);
  return {
    code: connectError.code,
    message: connectError.rawMessage,
    reason: info?.reason,
    metadata: info ? { ...info.metadata } : {},
  };
}

/** How long a live stream waits before it reconnects after the server drained. */
const RECONNECT_AFTER_MS = 2_000;

/**
 * A pause of `base` to twice that, at random: a drained replica's watchers
 * must not all come back in the same instant.
 */
function jittered(base: number): number {
  return base * (1 + Math.random());
}

/**
 * A server stream that reopens when the server ends it with UNAVAILABLE (a
 * replica draining, or at its watcher cap), until `signal` aborts it or the
 * server ends it for good (a final state, or another error).
 */
async function* reconnecting<T>(
  open: (signal: AbortSignal | undefined) => AsyncIterable<T>,
  signal: AbortSignal | undefined,
): AsyncGenerator<T> {
  for (;;) {
    try {
      yield* open(signal);
      return;
    } catch (error) {
      if (signal?.aborted || ConnectError.from(error).code !== Code.Unavailable) throw error;
      await new Promise((resolve) => setTimeout(resolve, jittered(RECONNECT_AFTER_MS)));
    }
  }
}

/**
 * An event's availability as Server-Sent Events, for pages that would rather
 * not bundle a gRPC-Web stream: the browser's `EventSource` reconnects by
 * itself (with `Last-Event-ID`, so an unchanged state is not sent again).
 * Availability is public, which an `EventSource` needs: it cannot send an
 * Authorization header, so a queue entry is watched with `watchQueueEntry`.
 * Close the returned source to stop.
 */
export function availabilityEvents(
  baseUrl: string,
  eventId: string,
  onUpdate: (update: AvailabilityUpdate) => void,
): { close(): void } {
  const url = `${baseUrl}/v1/events/${encodeURIComponent(eventId)}:watchAvailability`;
  let source: EventSource;
  let closed = false;
  let pause = RECONNECT_AFTER_MS;
  const open = () => {
    source = new EventSource(url);
    source.addEventListener("message", (event) => {
      pause = RECONNECT_AFTER_MS;
      onUpdate(fromJson(AvailabilityUpdateSchema, JSON.parse((event as MessageEvent<string>).data)));
    });
    // An answer that is not a stream (a 503 from a replica at its watcher
    // cap) closes an EventSource for good: open a new one after a pause
    // that grows while it keeps failing.
    source.addEventListener("error", () => {
      if (closed || source.readyState !== EventSource.CLOSED) return;
      setTimeout(() => closed || open(), jittered(pause));
      pause = Math.min(pause * 2, 60_000);
    });
  };
  open();
  return {
    close() {
      closed = true;
      source.close();
    },
  };
}
