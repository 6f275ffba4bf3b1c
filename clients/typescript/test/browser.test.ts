// The demo page in real headless Chromium (Debian's, driven by
// playwright-core), served from its own origin like a production web shop:
// every call crosses origins, so CORS is exercised as deployed.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";

import { chromium, type Browser } from "playwright-core";

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

test("the demo page buys a ticket through gRPC-Web and shows its code", async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${fixture.pagePort}/?api=${encodeURIComponent(fixture.apiUrl)}`);
  await page.locator(`[data-event-id="${fixture.eventId}"]`).click();
  await page.fill("#email", fixture.customer.email);
  await page.fill("#password", fixture.customer.password);
  await page.click("#sign-in");
  await page.locator("#status", { hasText: "Signed in" }).waitFor();
  await page.locator(`[data-category-id="${fixture.categoryId}"]`).click();

  const order = page.locator("#order[data-order-id]");
  await order.waitFor();
  const orderId = await order.getAttribute("data-order-id");
  assert.ok(orderId);
  await settle(orderId);

  const code = await page.locator(".ticket-code").first().textContent({ timeout: 20_000 });
  assert.equal(code?.length, 130, `a ticket code on the page, got ${code}`);
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
