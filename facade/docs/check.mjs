// Opens the API reference (GET /docs) in Chromium as a person would, waits
// for Redoc to render the served document, saves a screenshot, and prints
// what it saw as JSON: the page title and the operations rendered.
// Usage: node check.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // As this machine needs them: no sandbox as root, no GPU, no QUIC on a closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const problems = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("requestfailed", (request) => problems.push(`${request.url()} failed`));
  page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
  await page.goto(url);
  await page.waitForSelector('[data-section-id*="operation/"]', { timeout: 30_000 });
  await page.screenshot({ path: screenshot });
  const operations = await page.$$eval('[data-section-id*="operation/"]', (sections) =>
    [...new Set(sections.map((s) => s.getAttribute("data-section-id").split("operation/").pop()))],
  );
  const heading = await page.textContent("h1");
  console.log(JSON.stringify({ title: await page.title(), heading, operations, problems }));
} finally {
  await browser.close();
}
