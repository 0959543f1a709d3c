// Drives an example chat app in Chromium as a user would: create a chat by sending into
// it, watch a reply stream, stop one, approve a tool call. Any console error or page
// error fails the run. Usage: node drive.mjs NAME URL
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [name, url] = process.argv.slice(2);
if (!name || !url) throw new Error("usage: node drive.mjs NAME URL");

const FLAGS = JSON.parse(
  readFileSync(new URL("../../scripts/chromium-flags.json", import.meta.url), "utf8"),
);
// Every wait is bounded; a dev server compiles a page on first request, so that one gets more.
const STEP_MS = 20_000;
const FIRST_LOAD_MS = 90_000;

const errors = [];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console error: ${m.text()}`);
  });
  const step = async (what, body) => {
    const started = Date.now();
    try {
      await body();
    } catch (e) {
      throw new Error(`${name}: ${what}: ${e.message}\nerrors seen: ${JSON.stringify(errors)}`);
    }
    console.log(`  ${name}: ${what} (${Date.now() - started} ms)`);
  };
  const input = page.getByLabel("Message");
  const send = async (text) => {
    await input.fill(text);
    await page.getByRole("button", { name: "Send" }).click();
  };
  const assistant = page.locator('[data-testid="messages"] li[data-role="assistant"]');

  await step("the page loads and the hook is ready", async () => {
    await page.goto(url, { timeout: FIRST_LOAD_MS });
    await page.getByTestId("chat").waitFor({ timeout: FIRST_LOAD_MS });
  });
  await step("a first message creates the chat and its reply arrives", async () => {
    await send("hello from the example");
    await assistant
      .filter({ hasText: "hello from the example" })
      .and(page.locator('[data-status="complete"]'))
      .waitFor();
  });
  await step("a long reply streams and Stop cancels it", async () => {
    await send("/slow 100");
    const streaming = assistant.and(page.locator('[data-status="streaming"]'));
    await streaming.waitFor();
    const first = (await streaming.textContent()) ?? "";
    await page.waitForFunction(
      (before) => {
        const last = [...document.querySelectorAll('li[data-role="assistant"]')].at(-1);
        return last?.dataset.status === "streaming" && last.textContent.length > before;
      },
      first.length,
    );
    await page.getByRole("button", { name: "Stop" }).click();
    await page.locator('[data-testid="chat"][data-status="idle"]').waitFor();
    await assistant.last().and(page.locator('[data-status="cancelled"]')).waitFor();
  });
  await step("a tool call waits for approval and runs once approved", async () => {
    await send('/tool calculator {"expression":"2+3"}');
    await page.getByRole("button", { name: "Approve" }).click();
    await page.locator('[data-testid="chat"][data-status="idle"]').waitFor();
    await assistant.last().and(page.locator('[data-status="complete"]')).filter({ hasText: "5" }).waitFor();
  });
  await step("a reload shows the page again without errors", async () => {
    await page.reload({ timeout: FIRST_LOAD_MS });
    await page.getByTestId("chat").waitFor({ timeout: FIRST_LOAD_MS });
  });
  if (errors.length > 0) throw new Error(`${name}: errors in the page:\n${errors.join("\n")}`);
} finally {
  await browser.close();
}
