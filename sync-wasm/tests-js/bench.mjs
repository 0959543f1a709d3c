// Live-sync figures in headless Chromium against the real server, printed, never asserted:
// how long a message sent in tab A takes to show in tab B, how far the screen trails the
// server while a reply streams, and how many requests an idle chat costs per minute.
// Run: CHATSYNC_BIN=... node bench.mjs (after scripts/build.sh).
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { startBackend, startPageServer } from "./servers.mjs";

const FLAGS = JSON.parse(readFileSync(new URL("../../scripts/chromium-flags.json", import.meta.url), "utf8"));
const SENDS = 20;
const IDLE_MS = Number(process.env.IDLE_MS ?? 60000);

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const figures = (name, xs) =>
  console.log(`${name}: p50 ${quantile(xs, 0.5).toFixed(0)} ms, p95 ${quantile(xs, 0.95).toFixed(0)} ms (n=${xs.length})`);

/** A tab of `profile`: tabs of one browser profile elect one poller per chat. */
async function openTab(profile, url, contextId) {
  const page = await profile.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.harnessReady === true);
  await page.evaluate(async (id) => {
    window.sync = new ChatSync({ baseUrl: "/api", contextId: id });
    window.seen = new Map();
    sync.subscribe((v) => {
      for (const m of v.messages) if (!seen.has(m.text)) seen.set(m.text, Date.now());
    });
    sync.start();
    await waitForView(sync, (v) => v.sync === "synced", "synced");
  }, contextId);
  return page;
}

const backend = await startBackend();
const pages = await startPageServer(backend.url);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
const profile = await browser.newContext();
try {
  const created = await fetch(`${backend.url}/api/contexts`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  }).then((r) => r.json());
  const a = await openTab(profile, pages.url, created.id);
  const b = await openTab(profile, pages.url, created.id);

  const delays = [];
  for (let i = 0; i < SENDS; i++) {
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 800));
    const text = `bench ${i} ${Math.random()}`;
    const sentAt = Date.now();
    await a.evaluate((t) => sync.sendMessage(t), text);
    await b.waitForFunction((t) => seen.has(t), text, { timeout: 10000 });
    delays.push((await b.evaluate((t) => seen.get(t), text)) - sentAt);
    // Let the reply finish, so each send starts from a resting chat.
    await b.waitForFunction(() => sync.getView().status === "idle", null, { timeout: 20000 });
  }
  figures("message sent in tab A, visible in tab B", delays);
  if (process.env.BENCH_VERBOSE) console.log("each:", delays.join(" "));

  // Streaming lag: a long-poll reader beside the browser notes when each text length
  // first exists on the server; tab B notes when it shows it.
  await b.evaluate(() => {
    window.lengths = new Map();
    sync.subscribe((v) => {
      const last = v.messages.at(-1);
      if (last?.role === "assistant" && !lengths.has(last.text.length)) lengths.set(last.text.length, Date.now());
    });
  });
  const serverSeen = new Map();
  let version = (await fetch(`${backend.url}/api/contexts/${created.id}/state`).then((r) => r.json())).version;
  await a.evaluate(() => sync.sendMessage("/slow 40"));
  for (let done = false; !done; ) {
    const r = await fetch(`${backend.url}/api/contexts/${created.id}/state?since=${version}&wait_ms=5000`);
    if (r.status === 304) continue;
    const state = await r.json();
    version = state.version;
    const reply = state.messages.filter((m) => m.role === "assistant").at(-1);
    const text = reply?.content.map((p) => p.text).join("") ?? "";
    if (reply && !serverSeen.has(text.length)) serverSeen.set(text.length, Date.now());
    done = reply?.status === "complete";
  }
  await new Promise((r) => setTimeout(r, 500));
  const shown = new Map(await b.evaluate(() => [...lengths]));
  const lags = [...serverSeen].filter(([len]) => shown.has(len)).map(([len, at]) => Math.max(0, shown.get(len) - at));
  figures("streamed text, server to screen", lags);

  const idleRate = async (tabs) => {
    const before = pages.polls(created.id).length;
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const per = ((pages.polls(created.id).length - before) * 60000) / IDLE_MS;
    console.log(`idle requests per minute, ${tabs} tab(s) on one chat: ${per.toFixed(1)}`);
  };
  await b.close();
  await idleRate(1);
  const more = [await openTab(profile, pages.url, created.id), await openTab(profile, pages.url, created.id)];
  await idleRate(3);
  await Promise.all(more.map((p) => p.close()));
} finally {
  await browser.close();
  await pages.stop();
  await backend.stop();
}
