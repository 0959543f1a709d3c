// The built @chatsync/sync-wasm package, used as an application uses it, in real Chromium
// against the real chatsync server with its scripted model.
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

import { startBackend, startPageServer } from "./servers.mjs";

// One list of Chromium flags for every browser test in the repository (root, headless,
// no network of its own): scripts/chromium-flags.json.
const CHROMIUM_FLAGS = JSON.parse(
  readFileSync(new URL("../../scripts/chromium-flags.json", import.meta.url), "utf8"),
);

/** Polls `condition` until it holds; fails at the deadline. */
async function until(condition, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

let backend;
let pages;
let browser;
let page;
const pageErrors = [];

before(async () => {
  backend = await startBackend();
  pages = await startPageServer(backend.url);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS });
  page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && pageErrors.push(m.text()));
  await page.exposeFunction("testControl", (mode) => pages.setFailure(mode));
  await page.goto(pages.url);
  await page.waitForFunction(() => window.harnessReady === true);
});

after(async () => {
  await browser?.close();
  await pages?.stop();
  await backend?.stop();
});

test("a sent message shows at once as pending, then as the server's copy with the reply", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    const snapshots = [];
    sync.subscribe((v) => snapshots.push(v.messages));
    const sending = sync.sendMessage("hello sync");
    const optimistic = sync.getView().messages.at(-1);
    await sending;
    const done = await waitForView(
      sync,
      (v) => v.status === "idle" && v.messages.some((m) => isReply(m, "hello sync")),
      "the reply",
    );
    sync.free();
    return { optimistic, done, snapshots };
  });
  assert.equal(r.optimistic.status, "pending");
  assert.equal(r.optimistic.text, "hello sync");
  assert.ok(r.optimistic.clientMessageId);

  const [user, reply, ...rest] = r.done.messages;
  assert.deepEqual(rest, []);
  assert.equal(user.role, "user");
  assert.equal(user.status, "complete");
  assert.equal(user.clientMessageId, r.optimistic.clientMessageId, "the server copy replaced it");
  assert.notEqual(user.id, r.optimistic.id, "the server id wins");
  assert.ok(user.version > 0);
  assert.ok(reply.text.includes("hello sync"));
  assert.equal(r.done.sync, "synced");
  for (const messages of r.snapshots) {
    const copies = messages.filter((m) => m.role === "user" && m.text === "hello sync");
    assert.ok(copies.length <= 1, "the message is never shown twice");
  }
});

test("tool calls wait for approval; approved ones run, the others are denied", async () => {
  const r = await page.evaluate(async () => {
    const run = async (approve) => {
      const sync = await newChat();
      await sync.sendMessage('/tool calculator {"expression":"2+3"}');
      const waiting = await waitForView(sync, (v) => v.status === "awaiting_approval", "approval");
      const ids = approve ? waiting.pendingToolCalls.map((c) => c.id) : [];
      await sync.approveTools(ids);
      const done = await waitForView(
        sync,
        (v) => v.status === "idle" && v.messages.at(-1)?.role === "assistant" && v.messages.at(-1).status === "complete",
        "the final reply",
      );
      sync.free();
      return { waiting, done };
    };
    return { approved: await run(true), denied: await run(false) };
  });
  const pending = r.approved.waiting.pendingToolCalls;
  assert.equal(pending.length, 1);
  assert.equal(pending[0].name, "calculator");
  assert.deepEqual(pending[0].arguments, { expression: "2+3" });
  assert.equal(pending[0].status, "pending");
  assert.ok(r.approved.done.messages.at(-1).text.includes("5"));
  assert.deepEqual(r.approved.done.pendingToolCalls, []);
  assert.match(r.denied.done.messages.at(-1).text, /denied/);
});

test("an action that does not fit the state rejects with a typed error", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    const error = await sync.approveTools(["nope"]).then(() => null, (e) => ({
      isError: e instanceof Error, kind: e.kind, status: e.status, code: e.code, message: e.message,
    }));
    const view = sync.getView();
    sync.free();
    return { error, status: view.status };
  });
  assert.equal(r.error.isError, true);
  assert.equal(r.error.kind, "http");
  assert.equal(r.error.status, 400);
  assert.ok(r.error.code);
  assert.ok(r.error.message);
  assert.equal(r.status, "idle");
});

test("streaming replies are visible while they stream, and cancel keeps the partial reply", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat({ baseIntervalMs: 50 });
    await sync.sendMessage("/slow 40");
    const streaming = await waitForView(sync, (v) => v.messages.some((m) => m.status === "streaming" && m.text.length > 0), "a streaming message");
    await sync.cancel();
    const done = await waitForView(sync, (v) => v.status === "idle" && v.messages.at(-1).status === "cancelled", "the cancelled reply");
    sync.free();
    return { streaming, done };
  });
  assert.equal(r.streaming.status, "running");
  const partial = r.done.messages.at(-1);
  assert.equal(partial.role, "assistant");
  assert.ok(partial.text.length > 0, "the partial reply is kept");
});

test("failed turns show the error; a transient failure recovers on its own", async () => {
  const r = await page.evaluate(async () => {
    const fatal = await newChat();
    await fatal.sendMessage("/fail fatal");
    const failed = await waitForView(fatal, (v) => v.status === "failed", "the failed turn");
    fatal.free();
    const transient = await newChat();
    await transient.sendMessage("/fail transient");
    const recovered = await waitForView(transient, (v) => v.status === "idle" && v.messages.at(-1).role === "assistant", "the recovered reply");
    transient.free();
    return { failed, recovered };
  });
  assert.equal(r.failed.state, "Failed");
  assert.ok(r.failed.error);
  assert.equal(r.recovered.error, null);
});

test("a send that cannot reach the server is marked failed and can be retried once online", async () => {
  const r = await page.evaluate(async () => {
    // Interval mode: a held long-poll would sit through the outage, and this is about
    // polls failing and backing off.
    const sync = await newChat({ mode: "interval", baseIntervalMs: 100, maxIntervalMs: 400 });
    await window.testControl("network");
    const error = await sync.sendMessage("through the outage").then(() => null, (e) => ({ kind: e.kind }));
    const failedView = sync.getView();
    const offline = await waitForView(sync, (v) => v.sync === "offline", "the offline phase");
    await window.testControl(null);
    const failed = failedView.messages.at(-1);
    await sync.retryMessage(failed.clientMessageId);
    const synced = await waitForView(sync, (v) => v.sync === "synced" && v.messages.some((m) => isReply(m, "through the outage")), "the reply");
    const raw = await sync.getChatState();
    sync.free();
    return { error, failed, offline, synced, raw };
  });
  assert.deepEqual(r.error, { kind: "network" });
  assert.equal(r.failed.status, "failed");
  assert.ok(r.failed.error);
  assert.equal(r.offline.lastError.kind, "network");
  assert.ok(r.offline.pollIntervalMs > 100, "errors back off");
  assert.equal(r.synced.lastError, null);
  const users = r.synced.messages.filter((m) => m.role === "user");
  assert.equal(users.length, 1);
  assert.equal(users[0].status, "complete");
  assert.equal(r.raw.message_count, r.synced.messages.length, "getChatState answers the raw wire shape");
});

test("retrying a send whose answer was lost does not store the message twice", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    sync.stop(); // only the send goes through the failing link
    await window.testControl("lose-answer");
    const error = await sync.sendMessage("exactly once").then(() => null, (e) => e.kind);
    await window.testControl(null);
    const cid = sync.getView().messages.at(-1).clientMessageId;
    await sync.retryMessage(cid);
    const raw = await sync.getChatState();
    sync.free();
    return { error, cid, raw };
  });
  assert.equal(r.error, "network");
  const copies = r.raw.messages.filter((m) => m.client_message_id === r.cid);
  assert.equal(copies.length, 1);
});

test("concurrent sends all arrive once each", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    await Promise.all(["one", "two", "three"].map((t) => sync.sendMessage(`concurrent ${t}`)));
    const done = await waitForView(sync, (v) => v.status === "idle" && v.messages.filter((m) => m.role === "assistant" && m.status === "complete").length === 3, "three replies");
    sync.free();
    return done.messages.filter((m) => m.role === "user").map((m) => m.text).sort();
  });
  assert.deepEqual(r, ["concurrent one", "concurrent three", "concurrent two"]);
});

test("quiet polls are conditional, one at a time, and back off; an action resets the interval", async () => {
  const contextId = await page.evaluate(async () => {
    window.quiet = await newChat({
      mode: "interval",
      baseIntervalMs: 50, maxIntervalMs: 200, backoffFactor: 2, unchangedPollsBeforeBackoff: 1, burstPolls: 2,
      headers: { "X-Test-Tag": "quiet" },
    });
    await waitForView(quiet, (v) => v.pollIntervalMs === 200, "the max interval");
    return quiet.getView().contextId;
  });
  const polls = pages.polls(contextId).filter((p) => p.end !== null);
  const conditional = polls.slice(1);
  assert.ok(conditional.length >= 3);
  assert.ok(polls.every((p) => p.tag === "quiet"), "the headers option goes with every poll");
  for (const p of conditional) {
    assert.match(p.path, /\?since=\d+$/);
    assert.match(p.ifNoneMatch, /^"\d+"$/);
  }
  assert.equal(conditional.at(-1).status, 304, "an unchanged context answers 304");
  for (let i = 1; i < polls.length; i++) {
    assert.ok(polls[i].start >= polls[i - 1].end, "a poll starts only after the previous one ended");
  }
  const after = await page.evaluate(async () => {
    await quiet.sendMessage("wake up");
    const v = quiet.getView();
    quiet.free();
    return v.pollIntervalMs;
  });
  assert.equal(after, 50);
});

test("a hidden tab stops polling at once and polls again when visible", async () => {
  const contextId = await page.evaluate(async () => {
    window.tab = await newChat({ baseIntervalMs: 50 });
    setHidden(true);
    const paused = tab.getView();
    if (!(paused.paused && paused.sync === "paused" && paused.nextPollAt === null)) {
      throw new Error(`not paused: ${JSON.stringify(paused)}`);
    }
    return paused.contextId;
  });
  // Let any poll already in flight land, then make sure nothing else goes out.
  await page.waitForTimeout(100);
  const hiddenCount = pages.polls(contextId).length;
  await page.waitForTimeout(400);
  assert.equal(pages.polls(contextId).length, hiddenCount, "no polls while hidden");
  const resumed = await page.evaluate(() => {
    setHidden(false);
    return tab.getView();
  });
  assert.equal(resumed.sync, "synced");
  assert.equal(resumed.pollIntervalMs, 50);
  // The request itself takes a moment to reach the proxy.
  await until(() => pages.polls(contextId).length > hiddenCount, "a poll once visible again");
  await page.evaluate(() => tab.free());
});

test("deleting the current context, here or elsewhere, stops polling it", async () => {
  const r = await page.evaluate(async () => {
    const here = await newChat({ baseIntervalMs: 50 });
    await here.deleteContext(here.getView().contextId);
    const deletedHere = here.getView();

    const watched = await newChat({ baseIntervalMs: 50 });
    const other = new ChatSync({ baseUrl: "/api" });
    await other.deleteContext(watched.getView().contextId);
    const deletedElsewhere = await waitForView(watched, (v) => v.sync === "deleted", "the 404");
    other.free();
    return { deletedHere, deletedElsewhere, ids: [deletedHere.contextId, deletedElsewhere.contextId] };
  });
  assert.equal(r.deletedHere.sync, "deleted");
  assert.equal(r.deletedHere.nextPollAt, null);
  assert.equal(r.deletedElsewhere.lastError.kind, "deleted");
  assert.equal(r.deletedElsewhere.lastError.status, 404);
  // Let any poll already in flight land, then make sure nothing else goes out.
  await page.waitForTimeout(100);
  const counts = r.ids.map((id) => pages.polls(id).length);
  await page.waitForTimeout(300);
  assert.deepEqual(r.ids.map((id) => pages.polls(id).length), counts, "no polls after deletion");
});

test("stop() ends polling and a new ChatSync on the same context sees the whole history", async () => {
  const stopped = await page.evaluate(async () => {
    window.first = await newChat({ baseIntervalMs: 50 });
    await first.sendMessage("remember me");
    await waitForView(first, (v) => v.messages.some((m) => isReply(m, "remember me")), "the reply");
    first.stop();
    return first.getView();
  });
  assert.equal(stopped.sync, "stopped");
  assert.equal(stopped.nextPollAt, null);
  // Let any poll already in flight land, then make sure nothing else goes out.
  await page.waitForTimeout(100);
  const count = pages.polls(stopped.contextId).length;
  await page.waitForTimeout(300);
  assert.equal(pages.polls(stopped.contextId).length, count, "no polls after stop()");

  const reloaded = await page.evaluate(async (contextId) => {
    first.free();
    // What a page refresh does: a new instance on the same context.
    const second = new ChatSync({ baseUrl: "/api", contextId });
    second.start();
    const view = await waitForView(second, (v) => v.sync === "synced", "the reload");
    second.free();
    return view;
  }, stopped.contextId);
  assert.deepEqual(
    reloaded.messages.map((m) => [m.role, m.text.includes("remember me")]),
    [["user", true], ["assistant", true]],
  );
});

test("switching context shows only the new context's messages", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    await sync.sendMessage("in the first chat");
    const second = await sync.createContext({ title: "second" });
    sync.setContext(second.id);
    const switched = await waitForView(sync, (v) => v.contextId === second.id && v.sync === "synced", "the second context");
    sync.setContext(null);
    const none = sync.getView();
    sync.free();
    return { switched, none };
  });
  assert.deepEqual(r.switched.messages, []);
  assert.equal(r.none.sync, "stopped");
  assert.equal(r.none.contextId, null);
});

test("contexts are created and listed in camelCase, page by page", async () => {
  const r = await page.evaluate(async () => {
    const sync = new ChatSync({ baseUrl: "/api" });
    const created = await sync.createContext({ title: "config", modelId: null, systemPrompt: "be brief" });
    const first = await sync.listContexts({ limit: 1 });
    const next = await sync.listContexts({ limit: 1, cursor: first.nextCursor });
    sync.free();
    return { created, first, next };
  });
  assert.equal(r.created.title, "config");
  assert.equal(r.created.config.systemPrompt, "be brief");
  assert.equal(r.created.messageCount, 0);
  assert.equal(r.created.status, "idle");
  assert.ok(Date.parse(r.created.createdAt) > 0);
  assert.equal(r.first.contexts.length, 1);
  assert.ok(r.first.total > 1);
  assert.ok(r.first.nextCursor);
  assert.notEqual(r.next.contexts[0].id, r.first.contexts[0].id);
});

test("bad options throw a typed error instead of being ignored", async () => {
  const r = await page.evaluate(() =>
    ["baseIntervalMS", "maxIntervalMs"].map((key) => {
      try {
        new ChatSync({ baseUrl: "/api", baseIntervalMs: 1000, [key]: 10 });
        return null;
      } catch (e) {
        return { isError: e instanceof Error, kind: e.kind };
      }
    }),
  );
  assert.deepEqual(r, [
    { isError: true, kind: "invalid" },
    { isError: true, kind: "invalid" },
  ]);
});

test("a page on another origin syncs with the server directly (CORS)", async () => {
  const r = await page.evaluate(async (apiUrl) => {
    const sync = new ChatSync({ baseUrl: apiUrl, mode: "interval", baseIntervalMs: 50 });
    const context = await sync.createContext({});
    sync.setContext(context.id);
    sync.start();
    await sync.sendMessage("across origins");
    const done = await waitForView(sync, (v) => v.messages.some((m) => isReply(m, "across origins")), "the reply");
    // Quiet polls carry If-None-Match, which only passes when CORS allows that header.
    const quiet = await waitForView(sync, (v) => v.sync === "synced" && v.pollIntervalMs > 50, "a 304", 15000);
    sync.free();
    return { done, quiet };
  }, `${backend.url}/api`);
  assert.equal(r.done.messages.length, 2);
  assert.equal(r.quiet.lastError, null);
});

test("listeners get the view at once; a throwing one does not stop the others", async () => {
  pageErrors.length = 0;
  const r = await page.evaluate(() => {
    const sync = new ChatSync({ baseUrl: "/api" });
    const calls = [];
    sync.subscribe(() => {
      throw new Error("listener bug");
    });
    const off = sync.subscribe((v) => calls.push(v.sync));
    sync.setContext("6f1c2b8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    off();
    off();
    sync.setContext(null);
    sync.free();
    return calls;
  });
  assert.deepEqual(r, ["stopped", "stopped"], "called at subscribe and on the change, then never");
  assert.ok(pageErrors.some((e) => e.includes("listener bug")), "the listener's error is reported");
});

test("a failed message can be discarded; pending ones cannot", async () => {
  const r = await page.evaluate(async () => {
    // Port 9 (discard) is closed on the test machine: every request fails.
    const sync = new ChatSync({ baseUrl: "http://127.0.0.1:9/api", contextId: "6f1c2b8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b" });
    const sending = sync.sendMessage("never arrives");
    const pending = sync.getView().messages[0];
    sync.discardMessage(pending.clientMessageId);
    const keptWhilePending = sync.getView().messages.length;
    const error = await sending.then(() => null, (e) => e.kind);
    sync.discardMessage(pending.clientMessageId);
    const left = sync.getView().messages.length;
    sync.free();
    return { keptWhilePending, error, left };
  });
  assert.deepEqual(r, { keptWhilePending: 1, error: "network", left: 0 });
});

test("free() with a poll scheduled leaves nothing running behind", async () => {
  pageErrors.length = 0;
  await page.evaluate(async () => {
    const sync = await newChat({ baseIntervalMs: 20 });
    setHidden(true);
    setHidden(false);
    sync.free();
  });
  await page.waitForTimeout(200);
  await page.evaluate(() => {
    setHidden(true);
    setHidden(false);
  });
  assert.deepEqual(pageErrors, []);
});

test("long-polls are held by the server and show another client's message at once", async () => {
  const contextId = await page.evaluate(async () => {
    window.watching = await newChat();
    return watching.getView().contextId;
  });
  // Write as another client once a held poll has reached the server.
  const held = (p) => p.path.includes("wait_ms=") && p.end === null;
  await until(() => pages.polls(contextId).some(held), "a held poll");
  const seenAfterMs = await page.evaluate(async (contextId) => {
    const sync = window.watching;
    const sent = performance.now();
    const shown = waitForView(sync, (v) => v.messages.some((m) => m.text === "from elsewhere"), "the other message");
    await fetch(`/api/contexts/${contextId}/actions/send_message?wait=false`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ content: "from elsewhere" }),
    });
    await shown;
    const seenAfterMs = performance.now() - sent;
    sync.free();
    return seenAfterMs;
  }, contextId);
  const polls = pages.polls(contextId);
  assert.match(polls[1].path, /\?since=\d+&wait_ms=25000$/, "after the first full state, polls are held");
  assert.ok(seenAfterMs < 1000, `shown ${seenAfterMs} ms after the send, not on a timer`);
  const ended = polls.filter((p) => p.end !== null);
  for (let i = 1; i < ended.length; i++) {
    assert.ok(ended[i].start >= ended[i - 1].end, "one poll at a time");
  }
});

test("a 401 stops polling, reports kind auth once, and start() with a new token resumes", async () => {
  await page.evaluate(async () => {
    window.token = "stale";
    window.authErrors = [];
    window.guarded = await newChat({
      getToken: async () => window.token,
      onAuthError: (e) => authErrors.push({ kind: e.kind, status: e.status, name: e.name }),
    });
  });
  const contextId = await page.evaluate(() => guarded.getView().contextId);
  await pages.setFailure("auth");
  try {
    const stopped = await page.evaluate(async () => {
      guarded.refetch();
      return waitForView(guarded, (v) => v.sync === "error", "the auth stop");
    });
    assert.equal(stopped.lastError.kind, "auth");
    assert.equal(stopped.lastError.status, 401);
    const count = pages.polls(contextId).length;
    assert.equal(pages.polls(contextId).at(-1).authorization, "Bearer stale", "getToken's token is sent");
    await page.evaluate(() => window.dispatchEvent(new Event("focus")));
    await page.waitForTimeout(300);
    assert.equal(pages.polls(contextId).length, count, "nothing is retried after a 401");
    assert.deepEqual(await page.evaluate(() => authErrors), [{ kind: "auth", status: 401, name: "SyncError" }]);

    const refused = await page.evaluate(async () => {
      const error = await guarded.sendMessage("sent with a stale token").then(() => null, (e) => ({ kind: e.kind, status: e.status }));
      const view = guarded.getView();
      const stored = JSON.parse(localStorage.getItem("chatsync-queue:/api") ?? "[]");
      return { error, lastError: view.lastError.kind, status: view.messages.at(-1).status, stored: stored.length };
    });
    assert.deepEqual(refused.error, { kind: "auth", status: 401 });
    assert.equal(refused.lastError, "auth", "lastError stays auth");
    assert.equal(refused.status, "failed");
    assert.equal(refused.stored, 1, "a send refused for its token stays queued");

    const resumed = await page.evaluate(async () => {
      window.token = "fresh";
      guarded.start();
      return waitForView(guarded, (v) => v.sync === "synced" && v.messages.some((m) => isReply(m, "sent with a stale token")), "synced again, the refused send replayed");
    });
    assert.equal(resumed.lastError, null);
    assert.equal(pages.polls(contextId).at(-1).authorization, "Bearer fresh");
    assert.equal(await storedUserMessages(contextId, "sent with a stale token"), 1, "the server stored it once");
    assert.equal(await page.evaluate(() => localStorage.getItem("chatsync-queue:/api")), null);
  } finally {
    await pages.setFailure(null);
    await page.evaluate(() => guarded.free());
  }
});

test("a user's queued sends are neither shown to nor replayed by the next user to sign in", async () => {
  const contextId = await page.evaluate(async () => {
    const alice = await newChat({ userId: "alice", mode: "interval", baseIntervalMs: 100, maxIntervalMs: 300 });
    await window.testControl("network");
    await alice.sendMessage("queued by alice").catch(() => {});
    const id = alice.getView().contextId;
    alice.free();
    return id;
  });
  await pages.setFailure(null);
  const queueOf = (user) => page.evaluate((key) => JSON.parse(localStorage.getItem(key) ?? "[]").length, `chatsync-queue:/api user:${user}`);
  assert.equal(await queueOf("alice"), 1, "alice's send waits in her own queue");

  const bob = await page.evaluate(async (id) => {
    window.bob = new ChatSync({ baseUrl: "/api", contextId: id, userId: "bob" });
    bob.start();
    const shown = bob.getView().messages.length;
    // Sends to one chat go in order: had bob's client taken alice's send, it would go first.
    await bob.sendMessage("sent by bob");
    const view = await waitForView(bob, (v) => v.messages.some((m) => isReply(m, "sent by bob")), "bob's reply");
    bob.free();
    return { shown, texts: view.messages.filter((m) => m.role === "user").map((m) => m.text) };
  }, contextId);
  assert.equal(bob.shown, 0, "alice's queued send is not shown to bob");
  assert.deepEqual(bob.texts, ["sent by bob"]);
  assert.equal(await storedUserMessages(contextId, "queued by alice"), 0, "bob did not replay it");
  assert.equal(await queueOf("alice"), 1, "and it is still alice's");

  const back = await page.evaluate(async (id) => {
    const alice = new ChatSync({ baseUrl: "/api", contextId: id, userId: "alice" });
    alice.start();
    const view = await waitForView(alice, (v) => v.messages.some((m) => isReply(m, "queued by alice")), "alice's replayed send");
    alice.free();
    return view.messages.filter((m) => m.role === "user").map((m) => m.text);
  }, contextId);
  assert.deepEqual(back, ["sent by bob", "queued by alice"], "alice signing in again replays it");
  assert.equal(await storedUserMessages(contextId, "queued by alice"), 1, "once");
  assert.equal(await queueOf("alice"), 0);
});

test("offline pauses at once, online polls at once; a held poll is aborted while hidden", async () => {
  const contextId = await page.evaluate(async () => {
    window.roaming = await newChat();
    return roaming.getView().contextId;
  });
  await page.context().setOffline(true);
  try {
    const offline = await page.evaluate(() => waitForView(roaming, (v) => v.sync === "offline", "offline"));
    assert.equal(offline.nextPollAt, null);
    const count = pages.polls(contextId).length;
    await page.waitForTimeout(300);
    assert.equal(pages.polls(contextId).length, count, "nothing is sent while offline");
  } finally {
    await page.context().setOffline(false);
  }
  await page.evaluate(() => waitForView(roaming, (v) => v.sync === "synced", "online again"));
  await until(() => pages.polls(contextId).some((p) => p.end === null), "a held poll");
  await page.evaluate(() => setHidden(true));
  try {
    // Let any poll already in flight land, then make sure nothing else goes out.
    await page.waitForTimeout(100);
    const held = pages.polls(contextId).length;
    await page.waitForTimeout(300);
    assert.equal(pages.polls(contextId).length, held, "a hidden tab sends nothing");
  } finally {
    // The page stays visible for the tests after this one, whatever happened here.
    await page.evaluate(() => {
      setHidden(false);
      roaming.free();
    });
  }
});

test("unchanged messages keep their objects from view to view; refetch() reloads the state", async () => {
  const r = await page.evaluate(async () => {
    const sync = await newChat();
    await sync.sendMessage("first");
    const before = await waitForView(sync, (v) => v.messages.some((m) => isReply(m, "first")), "the first reply");
    await sync.sendMessage("second");
    const after = await waitForView(sync, (v) => v.messages.some((m) => isReply(m, "second")), "the second reply");
    const kept = before.messages.map((m, i) => m === after.messages[i]);
    sync.refetch();
    const reloaded = await waitForView(sync, (v) => v.sync === "synced" && v !== after, "the refetch");
    sync.free();
    return { kept, count: reloaded.messages.length, same: reloaded.messages[0] === after.messages[0] };
  });
  assert.deepEqual(r.kept, [true, true], "the first turn's objects are reused");
  assert.equal(r.count, 4);
  assert.equal(r.same, true, "a refetch that changes nothing keeps the objects too");
});

/** The user messages the server stored in `contextId` with exactly `text`. */
async function storedUserMessages(contextId, text) {
  const response = await fetch(`${backend.url}/api/contexts/${contextId}/state`);
  const state = await response.json();
  assert.equal(response.status, 200);
  return state.messages.filter((m) => m.role === "user" && JSON.stringify(m.content).includes(text)).length;
}

test("a send made offline is queued, survives in storage and lands once when back online", async () => {
  const contextId = await page.evaluate(async () => {
    window.traveller = await newChat();
    return traveller.getView().contextId;
  });
  await page.context().setOffline(true);
  let queued;
  try {
    await page.evaluate(() => waitForView(traveller, (v) => v.sync === "offline", "offline"));
    queued = await page.evaluate(async () => {
      const error = await traveller.sendMessage("sent on the train").then(() => null, (e) => ({ kind: e.kind, code: e.code }));
      const message = traveller.getView().messages.at(-1);
      const stored = JSON.parse(localStorage.getItem("chatsync-queue:/api") ?? "[]");
      return { error, message, stored };
    });
  } finally {
    await page.context().setOffline(false);
  }
  assert.deepEqual(queued.error, { kind: "network", code: "queued" });
  assert.equal(queued.message.status, "failed");
  assert.equal(queued.stored.length, 1);
  assert.equal(queued.stored[0].clientMessageId, queued.message.clientMessageId);
  const after = await page.evaluate(async () => {
    const view = await waitForView(traveller, (v) => v.messages.some((m) => isReply(m, "sent on the train")), "the replayed send's reply");
    traveller.free();
    return { view, stored: localStorage.getItem("chatsync-queue:/api") };
  });
  assert.equal(after.stored, null, "the queue is empty once delivered");
  assert.equal(after.view.messages.filter((m) => m.role === "user").length, 1);
  assert.equal(await storedUserMessages(contextId, "sent on the train"), 1, "the server stored it once");
});

test("a send kept through a reload is shown again and lands once when the server is back", async () => {
  const contextId = await page.evaluate(async () => {
    const sync = await newChat({ mode: "interval", baseIntervalMs: 100, maxIntervalMs: 300 });
    await window.testControl("network");
    await sync.sendMessage("before the reload").catch(() => {});
    const id = sync.getView().contextId;
    sync.free();
    return id;
  });
  try {
    await page.reload();
    await page.waitForFunction(() => window.harnessReady === true);
    const restored = await page.evaluate((id) => {
      window.reloaded = new ChatSync({ baseUrl: "/api", contextId: id, mode: "interval", baseIntervalMs: 100, maxIntervalMs: 300 });
      reloaded.start();
      return reloaded.getView().messages.filter((m) => m.role === "user");
    }, contextId);
    assert.equal(restored.length, 1, "the queued send is shown after the reload");
    assert.equal(restored[0].text, "before the reload");
  } finally {
    await pages.setFailure(null);
  }
  const view = await page.evaluate(async () => {
    const view = await waitForView(reloaded, (v) => v.messages.some((m) => isReply(m, "before the reload")), "the replayed send's reply");
    reloaded.free();
    return view;
  });
  assert.equal(view.messages.filter((m) => m.role === "user").length, 1);
  assert.equal(await storedUserMessages(contextId, "before the reload"), 1, "the server stored it once");
  assert.equal(await page.evaluate(() => localStorage.getItem("chatsync-queue:/api")), null);
});

/**
 * A new tab of `profile` (a browser context: tabs share storage, locks and channels only
 * within one) on the test page, counting its `GET /state` requests.
 */
async function openTab(profile) {
  const tab = await profile.newPage();
  tab.on("pageerror", (e) => pageErrors.push(String(e)));
  const stateRequests = [];
  tab.on("request", (r) => r.url().includes("/state") && stateRequests.push(performance.now()));
  await tab.goto(pages.url);
  await tab.waitForFunction(() => window.harnessReady === true);
  return { tab, stateRequests };
}

/** Starts a ChatSync on `contextId` in `tab` and waits for its first synced view. */
function follow(tab, contextId) {
  return tab.evaluate(async (id) => {
    window.chat = new ChatSync({ baseUrl: "/api", contextId: id });
    chat.start();
    await waitForView(chat, (v) => v.sync === "synced", "the first sync");
  }, contextId);
}

/** Two tabs of one new profile on a new chat: `a` leads (it came first), `b` follows. */
async function twoTabsOnANewChat() {
  const profile = await browser.newContext();
  const a = await openTab(profile);
  const b = await openTab(profile);
  const contextId = await a.tab.evaluate(async () => {
    window.chat = await newChat();
    return chat.getView().contextId;
  });
  await follow(b.tab, contextId);
  return { profile, a, b, contextId };
}

test("two tabs on one chat: one polls, a send in either shows in both", async () => {
  const { profile, a, b, contextId } = await twoTabsOnANewChat();
  try {
    const before = b.stateRequests.length;
    const shown = await b.tab.evaluate(async () => {
      const sent = chat.sendMessage("from the second tab");
      const { status, text } = chat.getView().messages.at(-1);
      await sent;
      return { status, text };
    });
    assert.deepEqual(shown, { status: "pending", text: "from the second tab" }, "shown at once in the follower");
    const seen = (tab) => tab.evaluate(() => waitForView(chat, (v) => v.messages.some((m) => isReply(m, "from the second tab")), "the reply"));
    await seen(a.tab);
    await seen(b.tab);
    await a.tab.evaluate(() => chat.sendMessage("from the first tab"));
    await b.tab.evaluate(() => waitForView(chat, (v) => v.messages.some((m) => isReply(m, "from the first tab")), "the other tab's send"));
    assert.ok(a.stateRequests.length > 0, "the leader polls");
    assert.equal(b.stateRequests.length, before, "the follower sends no state requests");
    assert.equal(before, 0, "the follower got its first state from the leader");
  } finally {
    await profile.close();
  }
});

test("a message sent in a follower shows in the leader at once, pending, then once as the server's", async () => {
  const { profile, a, b } = await twoTabsOnANewChat();
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const hold = async (route) => {
    await held;
    await route.continue();
  };
  try {
    await b.tab.route("**/actions/send_message*", hold);
    await b.tab.evaluate(() => {
      window.sending = chat.sendMessage("held in the follower");
    });
    const pending = await a.tab.evaluate(() =>
      waitForView(chat, (v) => v.messages.some((m) => m.text === "held in the follower"), "the follower's pending send").then((v) => v.messages.at(-1)),
    );
    assert.equal(pending.status, "pending", "shown before the server has it");
    release();
    await b.tab.evaluate(() => window.sending);
    const view = await a.tab.evaluate(() => waitForView(chat, (v) => v.messages.some((m) => isReply(m, "held in the follower")), "the reply"));
    const copies = view.messages.filter((m) => m.text === "held in the follower");
    assert.deepEqual(copies.map((m) => m.status), ["complete"], "the server's copy replaced it, once");
  } finally {
    release();
    await profile.close();
  }
});

test("a send queued in a follower tab is replayed by the leader only, and lands once", async () => {
  const { profile, a, b, contextId } = await twoTabsOnANewChat();
  const sends = (tab) => {
    const urls = [];
    tab.on("request", (r) => r.url().includes("/actions/send_message") && urls.push(r.url()));
    return urls;
  };
  const fromA = sends(a.tab);
  const fromB = sends(b.tab);
  try {
    await pages.setFailure("network");
    const error = await b.tab.evaluate(() => chat.sendMessage("queued in the follower").then(() => null, (e) => e.kind));
    assert.equal(error, "network");
    const failed = await a.tab.evaluate(() =>
      waitForView(chat, (v) => v.messages.some((m) => m.text === "queued in the follower"), "the follower's failed send").then((v) => v.messages.at(-1)),
    );
    assert.equal(failed.status, "failed", "the leader shows the follower's failed send at once");
    await pages.setFailure(null);
    // Both tabs see the browser come back online; only the leader replays.
    await b.tab.evaluate(() => window.dispatchEvent(new Event("online")));
    await a.tab.evaluate(() => window.dispatchEvent(new Event("online")));
    for (const { tab } of [a, b]) {
      await tab.evaluate(() => waitForView(chat, (v) => v.messages.some((m) => isReply(m, "queued in the follower")), "the replayed send's reply"));
    }
    assert.equal(fromB.length, 1, "the follower sent it once and did not replay it");
    assert.equal(fromA.length, 1, "the leader replayed it");
    assert.equal(await storedUserMessages(contextId, "queued in the follower"), 1);
  } finally {
    await pages.setFailure(null);
    await profile.close();
  }
});

test("when the leading tab closes, another takes over at once and keeps updating", async () => {
  const { profile, a, b, contextId } = await twoTabsOnANewChat();
  try {
    assert.equal(b.stateRequests.length, 0, "the follower waits");
    const closed = performance.now();
    await a.tab.close();
    await until(() => b.stateRequests.length > 0, "the follower polling as the new leader", 1000);
    console.log(`# take-over: first poll ${Math.round(b.stateRequests[0] - closed)} ms after the leader closed`);
    // A message from elsewhere reaches the remaining tab through its own polls now.
    const sent = await fetch(`${backend.url}/api/contexts/${contextId}/actions/send_message?wait=false`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: "after the take-over" }),
    });
    assert.equal(sent.status < 300, true);
    await b.tab.evaluate(() => waitForView(chat, (v) => v.messages.some((m) => isReply(m, "after the take-over")), "the message sent elsewhere"));
  } finally {
    await profile.close();
  }
});
