// The server the client tests run against, written by the Rust integration
// test that started it (facade/tests/integration/clients.rs).
import { readFileSync } from "node:fs";

export interface Fixture {
  /** gRPC-Web base URL of the server under test. */
  apiUrl: string;
  /** The Midtrans simulator the server pays through. */
  simUrl: string;
  customer: { email: string; password: string };
  organizer: { email: string; password: string };
  eventId: string;
  categoryId: string;
  /** A category with one seat. */
  tinyCategoryId: string;
  /** An event on sale through its waiting room, and its category. */
  roomEventId: string;
  roomCategoryId: string;
  /** The browser test's customer (a customer's queue entry is one per event). */
  browserCustomer: { email: string; password: string };
  /** Where the browser test serves the demo page (an origin CORS allows). */
  pagePort: number;
}

const path = process.env.TICKETING_FIXTURE;
if (!path) throw new Error("TICKETING_FIXTURE is not set: these tests run from the Rust integration test `clients`");
export const fixture: Fixture = JSON.parse(readFileSync(path, "utf8"));

/** Settles the order's payment in the simulator, as a buyer paying would. */
export async function settle(orderId: string): Promise<void> {
  const response = await fetch(`${fixture.simUrl}/_sim/transactions/${orderId}/settle`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  if (!response.ok) throw new Error(`simulator settle: ${response.status} ${await response.text()}`);
}

export async function eventually<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}
