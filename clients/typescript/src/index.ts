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
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { AuthService } from "./gen/ticketing/v1/auth_pb.js";
import { CatalogService } from "./gen/ticketing/v1/catalog_pb.js";
import { CheckInService } from "./gen/ticketing/v1/checkin_pb.js";
import { OrderService } from "./gen/ticketing/v1/orders_pb.js";
import { PaymentService } from "./gen/ticketing/v1/payments_pb.js";
import { ReportService } from "./gen/ticketing/v1/reports_pb.js";
import { WaitingRoomService } from "./gen/ticketing/v1/waiting_room_pb.js";

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
  /** Exchanges an e-mail and password for a token used from then on. */
  login(email: string, password: string): Promise<string>;
  token: string | undefined;
}

export function createTicketingClient(options: TicketingOptions): TicketingClient {
  const session = { token: options.token };
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
  return {
    auth,
    catalog: createClient(CatalogService, transport),
    orders: createClient(OrderService, transport),
    payments: createClient(PaymentService, transport),
    checkin: createClient(CheckInService, transport),
    reports: createClient(ReportService, transport),
    waitingRoom: createClient(WaitingRoomService, transport),
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
