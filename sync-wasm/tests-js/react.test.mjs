// The React hook (`@chatsync/sync-wasm/react`) in real Chromium under <StrictMode>, with
// React's development build (effects mount, unmount and mount again), against the real
// chatsync server: it loads the module itself, becomes ready, creates a chat, sends,
// streams, cancels, and survives an unmount and a mount, with nothing on the console.
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { startBackend, startPageServer } from "./servers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM_FLAGS = JSON.parse(
  readFileSync(new URL("../../scripts/chromium-flags.json", import.meta.url), "utf8"),
);

let out;
let backend;
let pages;
let browser;
let page;
const errors = [];

before(async () => {
  out = mkdtempSync(path.join(os.tmpdir(), "sync-wasm-react-"));
  // The package's React entry imports "react" from where the app installed it.
  execFileSync(
    path.join(here, "..", "tools", "node_modules", ".bin", "esbuild"),
    [
      path.join(here, "react-page", "app.jsx"),
      "--bundle",
      "--format=esm",
      "--jsx=automatic",
      "--define:process.env.NODE_ENV=\"development\"",
      "--log-level=warning",
      `--outfile=${path.join(out, "app.js")}`,
    ],
    { env: { ...process.env, NODE_PATH: path.join(here, "node_modules") }, stdio: "inherit" },
  );
  // The loader finds the module beside the script that loaded it, as bundlers place it.
  copyFileSync(path.join(here, "..", "pkg", "sync_wasm_bg.wasm"), path.join(out, "sync_wasm_bg.wasm"));
  cpSync(path.join(here, "react-page", "index.html"), path.join(out, "index.html"));
  backend = await startBackend();
  pages = await startPageServer(backend.url, { reactDir: out });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS });
  page = await browser.newPage();
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && errors.push(`console error: ${m.text()}`));
});

after(async () => {
  await browser?.close();
  await pages?.stop();
  await backend?.stop();
  if (out) rmSync(out, { recursive: true, force: true });
});

const lastReply = () => page.locator('li[data-role="assistant"]').last();

test("under StrictMode the hook gets ready, creates a chat, sends and streams, and survives unmount and mount", async () => {
  await page.goto(`${pages.url}/react/`);
  await page.getByTestId("chat").waitFor();

  await page.evaluate(() => window.chat.send("hello react"));
  await lastReply().and(page.locator('[data-status="complete"]')).filter({ hasText: "hello react" }).waitFor();
  const first = await page.getByTestId("chat").getAttribute("data-context");
  assert.ok(first, "createContext switched the hook to the new chat");

  await page.evaluate(() => window.chat.send("/slow 100"));
  await lastReply().and(page.locator('[data-status="streaming"]')).waitFor();
  await page.evaluate(() => window.chat.cancel());
  await lastReply().and(page.locator('[data-status="cancelled"]')).waitFor();
  assert.equal(await page.evaluate(() => window.sawStreaming), true);

  // A real unmount frees the client; a new mount makes a new one, on a new chat.
  await page.getByRole("button", { name: "Unmount" }).click();
  await page.getByTestId("chat").waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Mount" }).click();
  await page.getByTestId("chat").waitFor();
  await page.evaluate(() => window.chat.send("after the remount"));
  await lastReply().and(page.locator('[data-status="complete"]')).filter({ hasText: "after the remount" }).waitFor();
  assert.notEqual(await page.getByTestId("chat").getAttribute("data-context"), first);

  assert.equal(await page.evaluate(() => window.inconsistent ?? false), false, "sync is null exactly until ready");
  assert.equal(await page.getByRole("alert").count(), 0, "no action failed");
  assert.deepEqual(errors, [], "nothing on the console");
});
