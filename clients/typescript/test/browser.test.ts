// The demo page in real headless Chromium (Debian's, driven by
// playwright-core), served from its own origin like a production web shop:
// every call crosses origins, so CORS is exercised as deployed.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";

import { chromium, type Browser, type Page } from "playwright-core";

import { createTicketingClient } from "../src/index.js";
import { fixture, settle } from "./fixture.js";

const root = new URL("../../", import.meta.url); // the package folder, from dist/test/
const files: Record<string, [string, string]> = {
  "/": ["demo/index.html", "text/html"],
  "/main.js": ["dist/demo/main.js", "text/javascript"],
};

let server: Server;
let browser: Browser;

before(async () => {
  server = createServer(async (request, response) => {
    const file = files[new URL(request.url ?? "/", "http://page").pathname];
    if (!file) return void response.writeHead(404).end();
    response.writeHead(200, { "content-type": file[1] }).end(await readFile(new URL(file[0], root)));
  });
  await new Promise<void>((resolve) => server.listen(fixture.pagePort, "127.0.0.1", resolve));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // As this machine needs them: no sandbox as root, no GPU, no QUIC on a closed network.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic"],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function signIn(page: Page, who: { email: string; password: string }) {
  await page.fill("#email", who.email);
  await page.fill("#password", who.password);
  await page.click("#sign-in");
  await page.locator("#status", { hasText: "Signed in" }).waitFor();
}

/** Pays the order the page placed (in the simulator) and reads the ticket code the page then shows. */
async function payAndReadTicketCode(page: Page): Promise<string | null> {
  const order = page.locator("#order[data-order-id]");
  await order.waitFor();
  const orderId = await order.getAttribute("data-order-id");
  assert.ok(orderId);
  await settle(orderId);
  return page.locator(".ticket-code").first().textContent({ timeout: 20_000 });
}

test("the demo page buys a ticket through gRPC-Web and shows its code", async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${fixture.pagePort}/?api=${encodeURIComponent(fixture.apiUrl)}`);
  await page.locator(`[data-event-id="${fixture.eventId}"]`).click();
  await signIn(page, fixture.customer);
  await page.locator(`[data-category-id="${fixture.categoryId}"]`).click();

  const code = await payAndReadTicketCode(page);
  assert.equal(code?.length, 130, `a ticket code on the page, got ${code}`);
  await page.close();
});

test("the demo page queues with the ALTCHA widget, shows the place and buys once admitted", async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${fixture.pagePort}/?api=${encodeURIComponent(fixture.apiUrl)}`);
  await page.locator(`[data-event-id="${fixture.roomEventId}"]`).click();
  await signIn(page, fixture.browserCustomer);
  // Everything the queue section shows: the place lasts only until admission.
  await page.evaluate(() => {
    const queue = document.getElementById("queue")!;
    const shown: string[] = [];
    Object.assign(window, { queueShown: shown });
    const record = () => shown.push(queue.textContent ?? "");
    new MutationObserver(record).observe(queue, { childList: true, subtree: true, characterData: true });
  });
  await page.locator(`[data-category-id="${fixture.roomCategoryId}"]`).click();

  // The widget solves its proof-of-work when the customer ticks it (its
  // label, as the box itself lies under the widget's check mark).
  await page.getByText("I'm not a robot").click();
  const code = await payAndReadTicketCode(page);

  assert.equal(code?.length, 130, `a ticket code on the page, got ${code}`);
  const shown = await page.evaluate(() => (window as unknown as { queueShown: string[] }).queueShown);
  assert.ok(
    shown.some((text) => /number \d+ in line, \d+ ahead of you, about \d+ s to wait/.test(text)),
    `the page showed the place in line: ${shown.join(" | ")}`,
  );
  await page.close();
});

test("the demo page shows availability live: a sale elsewhere makes the number drop without a reload", async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${fixture.pagePort}/?api=${encodeURIComponent(fixture.apiUrl)}`);
  await page.locator(`[data-event-id="${fixture.eventId}"]`).click();
  // The page's event stream has delivered its first state.
  await page.locator('#categories[data-live="on"]').waitFor();
  const left = page.locator(`[data-available-for="${fixture.categoryId}"]`);
  const before = parseInt((await left.textContent()) ?? "", 10);
  assert.ok(before >= 2, `tickets left on the page: ${before}`);

  // Someone else buys two, from another client.
  const elsewhere = createTicketingClient({ baseUrl: fixture.apiUrl });
  await elsewhere.login(fixture.customer.email, fixture.customer.password);
  await elsewhere.orders.createOrder({
    eventId: fixture.eventId,
    items: [{ ticketCategoryId: fixture.categoryId, quantity: 2 }],
    requestId: randomUUID(),
  });

  await page.waitForFunction(
    ([selector, most]) => parseInt(document.querySelector(selector)?.textContent ?? "", 10) <= most,
    [`[data-available-for="${fixture.categoryId}"]`, before - 2] as const,
    { timeout: 20_000 },
  );
  await page.close();
});

test("a page from an origin CORS does not allow gets no answer", async () => {
  const page = await browser.newPage();
  const consoleErrors: string[] = [];
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));
  // localhost is another origin than the allowed 127.0.0.1, same page.
  await page.goto(`http://localhost:${fixture.pagePort}/?api=${encodeURIComponent(fixture.apiUrl)}`);
  await page.locator('#status[data-state="error"]').waitFor();
  assert.match(await page.locator("#status").innerText(), /Could not load events/);
  assert.ok(
    consoleErrors.some((text) => text.includes("CORS")),
    `the browser blocked the call for CORS: ${consoleErrors.join(" | ")}`,
  );
  await page.close();
});
