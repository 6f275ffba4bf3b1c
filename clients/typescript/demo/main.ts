// The demo page's script, bundled by esbuild into dist/demo/main.js.
import { OrderStatus, apiError, createTicketingClient, type Event } from "../src/index.js";

const api = createTicketingClient({ baseUrl: new URLSearchParams(location.search).get("api") ?? location.origin });
const element = (id: string) => document.getElementById(id)!;

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

async function showCategories(eventId: string) {
  try {
    const event = await api.catalog.getEvent({ eventId });
    element("categories").replaceChildren(
      ...event.ticketCategories.map((category) => {
        const item = document.createElement("li");
        item.textContent = `${category.name}: ${category.available} left`;
        item.append(button("Buy 1", { categoryId: category.id }, () => buy(eventId, category.id)));
        return item;
      }),
    );
  } catch (error) {
    failed("Could not load the event", error);
  }
}

async function buy(eventId: string, ticketCategoryId: string) {
  if (!api.token) return status("Sign in first", "error");
  try {
    const order = await api.orders.createOrder({
      eventId,
      items: [{ ticketCategoryId, quantity: 1 }],
      requestId: crypto.randomUUID(),
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
