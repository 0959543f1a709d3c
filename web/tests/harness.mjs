// Shared set-up for the browser tests: a real chatsync server per test (own SQLite file,
// port 0), one headless Debian Chromium per test file, and small page helpers.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = path.join(WEB, "test-results");
const DIST = path.join(WEB, "dist");

/** The sync module's default base poll interval; waits for "absence" are counted in these. */
export const POLL_MS = 1000;

// One list of Chromium flags for every browser test in the repository (root, headless,
// no network of its own): scripts/chromium-flags.json.
const CHROMIUM_ARGS = JSON.parse(
  readFileSync(new URL("../../scripts/chromium-flags.json", import.meta.url), "utf8"),
);

function chatsyncBin() {
  const bin = process.env.CHATSYNC_BIN;
  if (!bin || !path.isAbsolute(bin)) {
    throw new Error("CHATSYNC_BIN must be the absolute path of the chatsync binary");
  }
  return bin;
}

/**
 * Starts the real server; resolves once it printed the address it bound. `args` are more
 * flags for it, e.g. `["--auth", "jwt", "--jwt-secret", secret]`.
 */
async function startServer({ chunkDelayMs = 5, args: extra = [] } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), "chatsync-web-"));
  const args = [
    "--addr", "127.0.0.1:0",
    "--database-url", `sqlite://${dir}/db.sqlite`,
    "--web-dir", DIST,
    "--scripted-chunk-delay-ms", String(chunkDelayMs),
    ...extra,
  ];
  const child = spawn(chatsyncBin(), args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => (log += d));

  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start within 20s\n${log}`)), 20_000);
    exited.then(({ code, signal }) => reject(new Error(`server exited (${code ?? signal}) before listening\n${log}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      log += `${line}\n`;
      const m = /^chatsync listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line.trim());
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });

  return {
    baseUrl,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function launchBrowser() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * A fresh server and browser context for one test. Cleans up after the test, saves the
 * server log, and fails the test if the page requested anything but its own server.
 */
export const DESKTOP = { width: 1200, height: 800 };
export const PHONE = { width: 390, height: 844 };

export async function setup(t, browser, serverOptions, contextOptions = {}) {
  const server = await startServer(serverOptions);
  const context = await browser.newContext({ viewport: DESKTOP, ...contextOptions });
  context.setDefaultTimeout(15_000);
  const foreign = [];
  context.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith(`${server.baseUrl}/`) && !url.startsWith("data:")) foreign.push(url);
  });
  const slug = t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
  t.after(async () => {
    await context.close();
    await mkdir(RESULTS, { recursive: true });
    await writeFile(path.join(RESULTS, `${slug}.server.log`), server.log());
    await server.stop();
  });
  return {
    server,
    context,
    page: await context.newPage(),
    async screenshot(page, suffix = "") {
      await mkdir(RESULTS, { recursive: true });
      await page.screenshot({ path: path.join(RESULTS, `${slug}${suffix}.png`) });
    },
    assertLocalOnly() {
      if (foreign.length) throw new Error(`requests left 127.0.0.1: ${foreign.join(", ")}`);
    },
  };
}

// ---- page helpers -------------------------------------------------------------------

export const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);
export const messages = (page, role) =>
  page.locator(role ? `[data-testid="message"][data-role="${role}"]` : '[data-testid="message"]');

/** Opens the app, on one chat when `contextId` is given, and waits until it shows the chat. */
export async function openApp(page, baseUrl, contextId) {
  await page.goto(contextId ? `${baseUrl}/#${contextId}` : `${baseUrl}/`);
  await byTestId(page, "chat-panel").waitFor();
}

export async function send(page, text) {
  await byTestId(page, "composer-input").fill(text);
  await byTestId(page, "composer-input").press("Enter");
}

/** The open chat's id, from the URL the app keeps it in. */
export const currentContextId = (page) => decodeURIComponent(new URL(page.url()).hash.slice(1)) || null;

export const waitForStatus = (page, status) =>
  page.locator(`[data-testid="chat-panel"][data-status="${status}"]`).waitFor();

/** Waits for a completed assistant reply whose text contains `needle`; returns its text. */
export async function waitForReply(page, needle) {
  const reply = page
    .locator('[data-testid="message"][data-role="assistant"][data-status="complete"]')
    .filter({ hasText: needle })
    .last();
  await reply.waitFor();
  return reply.locator('[data-testid="message-text"]').innerText();
}

/** Sends one message and waits for its turn to end with a reply quoting it. */
export async function turn(page, text) {
  await send(page, text);
  // The scripted model quotes at most the first eight words of a message.
  await waitForReply(page, text.split(/\s+/).slice(0, 8).join(" "));
  await waitForStatus(page, "idle");
}

export const texts = (locator) => locator.locator('[data-testid="message-text"]').allInnerTexts();

export const isStateRequest = (url, contextId) =>
  new URL(url).pathname === `/api/contexts/${encodeURIComponent(contextId)}/state`;

/** Flips the page's visibility the way a browser does when the tab is hidden or shown. */
export function setHidden(page, hidden) {
  return page.evaluate((hidden) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
  }, hidden);
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core on the page as it is now and returns the serious and critical violations,
 * each as "rule: the elements it found", so a failing assertion says what to fix.
 */
export async function axeViolations(page) {
  // Evaluated over the DevTools protocol: the app's Content-Security-Policy forbids inline
  // script tags, and tests must run under the policy the app ships with.
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
    }));
  });
  return violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.join(", ")}`);
}

/** Creates a chat straight through the API, as another client would. */
export async function createChat(server, title) {
  const r = await fetch(`${server.baseUrl}/api/contexts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title }),
  });
  if (r.status !== 201) throw new Error(`create answered ${r.status}`);
  return (await r.json()).id;
}
