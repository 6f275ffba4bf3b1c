// The demo page's script, bundled by esbuild into dist/demo/main.js.
import "altcha";

import {
  OrderStatus,
  QueueEntryStatus,
  apiError,
  availabilityEvents,
  createTicketingClient,
  type Event,
  type QueueEntry,
} from "../src/index.js";

const apiUrl = new URLSearchParams(location.search).get("api") ?? location.origin;
const api = createTicketingClient({ baseUrl: apiUrl });
const element = (id: string) => document.getElementById(id)!;

/** The ALTCHA widget's fetch: the challenge endpoint serves signed-in customers only. */
function signedInFetch(input: RequestInfo | URL, init?: RequestInit) {
  const headers = new Headers(init?.headers);
  headers.set("authorization", `Bearer ${api.token}`);
  return fetch(input, { ...init, headers });
}

function status(text: string, state: "ok" | "error" = "ok") {
  element("status").textContent = text;
  element("status").dataset.state = state;
}

function failed(what: string, error: unknown) {
  const { message, reason } = apiError(error);
  status(`${what}: ${reason ?? message}`, "error");
}

function button(label: string, data: Record<string, string>, onClick: () => void) {
  const b = document.createElement("button");
  b.textContent = label;
  Object.assign(b.dataset, data);
  b.addEventListener("click", onClick);
  return b;
}

async function showEvents() {
  try {
    const { events } = await api.catalog.listEvents({ pageSize: 20 });
    element("events").replaceChildren(
      ...events.map((event: Event) => {
        const item = document.createElement("li");
        item.textContent = `${event.name} — ${event.venue}`;
        item.append(button("Tickets", { eventId: event.id }, () => showCategories(event.id)));
        return item;
      }),
    );
    status(`${events.length} events on sale`);
  } catch (error) {
    failed("Could not load events", error);
  }
}

/** The open event's live availability (Server-Sent Events). */
let live: { close(): void } | undefined;

function showLeft(label: HTMLElement, available: number, soldOut: boolean) {
  label.textContent = soldOut ? "sold out" : `${available} left`;
}

async function showCategories(eventId: string) {
  try {
    const event = await api.catalog.getEvent({ eventId });
    const list = element("categories");
    list.replaceChildren(
      ...event.ticketCategories.map((category) => {
        const item = document.createElement("li");
        const left = document.createElement("span");
        left.dataset.availableFor = category.id;
        showLeft(left, category.available, category.available === 0);
        item.append(`${category.name}: `, left, " ");
        item.append(button("Buy 1", { categoryId: category.id }, () => buy(event, category.id)));
        return item;
      }),
    );
    // The numbers follow sales as they happen, without a reload.
    live?.close();
    delete list.dataset.live;
    live = availabilityEvents(apiUrl, eventId, (update) => {
      for (const category of update.categories) {
        const left = list.querySelector<HTMLElement>(`[data-available-for="${category.ticketCategoryId}"]`);
        if (left) showLeft(left, category.available, category.soldOut);
      }
      list.dataset.live = "on";
    });
  } catch (error) {
    failed("Could not load the event", error);
  }
}

async function buy(event: Event, ticketCategoryId: string) {
  if (!api.token) return status("Sign in first", "error");
  try {
    const admissionToken = event.waitingRoom?.enabled ? await queue(event.id) : "";
    const order = await api.orders.createOrder({
      eventId: event.id,
      items: [{ ticketCategoryId, quantity: 1 }],
      requestId: crypto.randomUUID(),
      admissionToken,
    });
    const payment = await api.payments.createPayment({ orderId: order.id });
    const section = element("order");
    section.dataset.orderId = order.id;
    const pay = document.createElement("a");
    pay.href = payment.redirectUrl;
    pay.textContent = "Pay with Midtrans";
    section.replaceChildren(`Order ${order.id} is waiting for payment. `, pay);
    await waitForTickets(order.id);
  } catch (error) {
    failed("Could not buy", error);
  }
}

/**
 * Joins the event's waiting room with the ALTCHA widget's proof-of-work,
 * shows the place in line until admitted, and returns the admission token.
 */
async function queue(eventId: string): Promise<string> {
  const section = element("queue");
  const widget = document.createElement("altcha-widget");
  // A fresh challenge (REST, the JSON the widget reads) for every verification.
  widget.setAttribute("challenge", `${apiUrl}/v1/events/${eventId}/queue:challenge`);
  // Its methods exist once it has loaded.
  widget.addEventListener("load", () => void widget.configure({ fetch: signedInFetch }), { once: true });
  const verified = new Promise<string>((resolve) =>
    widget.addEventListener("verified", (e) => resolve((e as CustomEvent<{ payload: string }>).detail.payload), {
      once: true,
    }),
  );
  section.replaceChildren("This sale has a waiting room. Confirm to join the queue:", widget);
  status("In the waiting room");

  let entry: QueueEntry = await api.waitingRoom.joinQueue({ eventId, altcha: await verified });
  const showPlace = (waiting: QueueEntry) => {
    section.textContent =
      `In the queue: number ${waiting.position} in line, ${waiting.aheadCount} ahead of you, ` +
      `about ${waiting.estimatedWaitSeconds} s to wait.`;
  };
  if (entry.status === QueueEntryStatus.WAITING) {
    showPlace(entry);
    // The place as the server pushes it (WatchQueueEntry), up to the admission.
    for await (entry of api.watchQueueEntry(eventId, entry.id)) {
      if (entry.status !== QueueEntryStatus.WAITING) break;
      showPlace(entry);
    }
  }
  if (entry.status !== QueueEntryStatus.ADMITTED || !entry.admission) {
    throw new Error(`the queue entry is ${QueueEntryStatus[entry.status]}`);
  }
  section.textContent = "Your turn: buying…";
  return entry.admission.token;
}

async function waitForTickets(orderId: string) {
  for (;;) {
    const order = await api.orders.getOrder({ orderId });
    if (order.status === OrderStatus.PAID) break;
    if (order.status !== OrderStatus.PENDING) return status(`Order ${OrderStatus[order.status]}`, "error");
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const { tickets } = await api.orders.listTickets({ orderId });
  element("order").replaceChildren(
    "Paid. Show this at the gate:",
    ...tickets.map((ticket) => {
      const code = document.createElement("code");
      code.className = "ticket-code";
      code.textContent = ticket.code;
      return code;
    }),
  );
  status("Paid");
}

element("login").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  try {
    await api.login((element("email") as HTMLInputElement).value, (element("password") as HTMLInputElement).value);
    status("Signed in");
  } catch (error) {
    failed("Could not sign in", error);
  }
});

void showEvents();
