// The chat flows a person goes through: sending, streaming, reloading, failures, tools.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  byTestId, currentContextId, launchBrowser, messages, openApp, send, setup, texts, turn,
  waitForReply, waitForStatus,
} from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

const TEST = { timeout: 90_000 };

test("send: the message shows at once as pending, then the reply arrives", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);

  // Hold the action request so the optimistic state can be seen before the server answers.
  let release;
  const held = new Promise((resolve) => (release = resolve));
  await page.route("**/actions/send_message*", async (route) => {
    await held;
    await route.continue();
  });

  await send(page, "hello from the browser");
  const mine = messages(page, "user").last();
  await mine.waitFor();
  assert.equal(await mine.getAttribute("data-status"), "pending");
  assert.equal(await mine.locator('[data-testid="message-text"]').innerText(), "hello from the browser");
  await byTestId(mine, "message-pending").waitFor();
  assert.equal(await byTestId(page, "composer-input").inputValue(), "", "the box clears on send");
  release();

  const reply = await waitForReply(page, "hello from the browser");
  assert.ok(reply.includes("hello from the browser"));
  await waitForStatus(page, "idle");
  assert.equal(await mine.getAttribute("data-status"), "complete");
  assert.equal(await byTestId(page, "message-pending").count(), 0);
  assert.equal(await messages(page).count(), 2, "one user message and one reply, nothing duplicated");
  await screenshot(page);
  assertLocalOnly();
});

test("streaming: /slow ends with the complete message, and a reload shows the same text", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await send(page, "/slow 30");

  const streaming = page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
  await streaming.waitFor();
  const partial = await streaming.locator('[data-testid="message-text"]').innerText();
  await screenshot(page, "-streaming");

  const final = page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"]');
  await final.waitFor({ timeout: 30_000 });
  await waitForStatus(page, "idle");
  const finalText = await final.locator('[data-testid="message-text"]').innerText();
  assert.ok(finalText.length > partial.length, `final text grew past the streamed part (${partial.length} chars)`);
  assert.ok(finalText.startsWith(partial.trim()), "streamed text is a prefix of the final text");

  await page.reload();
  await final.waitFor();
  assert.equal(await final.locator('[data-testid="message-text"]').innerText(), finalText);
  assert.equal(await streaming.count(), 0);
  await screenshot(page);
  assertLocalOnly();
});

test("refresh: after several turns a reload shows every message", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  for (const text of ["first question", "second question", "third question"]) await turn(page, text);

  const before = await texts(messages(page));
  assert.equal(before.length, 6);
  await page.reload();
  await waitForReply(page, "third question");
  assert.deepEqual(await texts(messages(page)), before);
  await screenshot(page);
  assertLocalOnly();
});

test("network failure: a lost send waits in the queue, says so, and Send now delivers it once", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await turn(page, "before the outage");

  await page.route("**/api/**", (route) => route.abort("connectionrefused"));
  await send(page, "sent while offline");
  // Lost on the network, it stays in the offline queue: shown as waiting, not as an error.
  const failed = messages(page, "user").filter({ hasText: "sent while offline" });
  await byTestId(failed, "message-queued").waitFor();
  assert.equal(await failed.getAttribute("data-status"), "failed");
  // With `--auth none` the one user's queue keeps the key it had before users existed, so
  // sends queued before an upgrade still go out after it.
  assert.deepEqual(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("chatsync-queue"))), ["chatsync-queue:/api"]);
  assert.equal(await byTestId(page, "error-banner").count(), 0);
  // The poller notices too, and says when it will try again.
  await page.locator('[data-testid="sync-status"][data-phase="offline"]').waitFor({ timeout: 15_000 });
  assert.match(await byTestId(page, "sync-status").innerText(), /Offline/);
  await screenshot(page, "-offline");

  await page.unroute("**/api/**");
  await byTestId(failed, "message-retry").click();
  await waitForReply(page, "sent while offline");
  await waitForStatus(page, "idle");
  assert.equal(await messages(page, "user").filter({ hasText: "sent while offline" }).count(), 1, "retry adds no duplicate");
  assert.equal(await byTestId(page, "message-queued").count(), 0);
  await page.reload();
  await waitForReply(page, "sent while offline");
  await screenshot(page);
  assertLocalOnly();
});

test("tool approval: an approved calculator call answers 5, a denied call says denied", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);

  await send(page, '/tool calculator {"expression":"2+3"}');
  const card = byTestId(page, "tool-approval");
  await card.waitFor();
  const call = card.locator('[data-testid="tool-call"][data-tool-name="calculator"]');
  assert.match(await byTestId(call, "tool-args").innerText(), /"expression": "2\+3"/);
  await screenshot(page, "-card");
  // One call: Approve runs it, in one action.
  await byTestId(call, "tool-approve").click();
  await card.waitFor({ state: "detached" });
  await waitForStatus(page, "idle");
  assert.match(await messages(page, "assistant").last().innerText(), /\b5\b/);

  await send(page, "/tool current_time {}");
  await card.locator('[data-testid="tool-call"][data-tool-name="current_time"]').waitFor();
  await byTestId(card, "tool-deny").click();
  await card.waitFor({ state: "detached" });
  await waitForStatus(page, "idle");
  assert.match(await messages(page, "assistant").last().innerText(), /denied/i);
  await screenshot(page);
  assertLocalOnly();
});

test("client tool: a chat waiting for an API client's tool output says so and can be cancelled", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  // An OpenAI SDK client declares its own tool; the scripted model calls it.
  const r = await fetch(`${server.baseUrl}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer any" },
    body: JSON.stringify({ input: '/tool lookup {"q":"x"}', tools: [{ type: "function", name: "lookup" }] }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const chats = await (await fetch(`${server.baseUrl}/api/contexts`)).json();
  await openApp(page, server.baseUrl, chats.contexts[0].id);

  await waitForStatus(page, "awaiting_tool_output");
  const notice = byTestId(page, "chat-awaiting-tool-output");
  assert.match(await notice.innerText(), /Waiting for the client's tool output[\s\S]*lookup/);
  assert.equal(await byTestId(page, "tool-approval").count(), 0, "nothing to approve here");
  assert.ok(await byTestId(page, "composer-input").isDisabled(), "the chat takes no message meanwhile");
  await screenshot(page, "-waiting");

  await byTestId(notice, "chat-cancel-tool-output").click();
  await notice.waitFor({ state: "detached" });
  await waitForStatus(page, "idle");
  await turn(page, "back to the person");
  await screenshot(page);
  assertLocalOnly();
});

test("new chat: the first message of a new chat runs a turn", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await byTestId(page, "empty-chat").waitFor();

  // With no chat at all, the first message creates one.
  await turn(page, "a message with no chat open");
  const first = currentContextId(page);
  assert.ok(first, "the new chat is open and in the URL");

  // "New chat" opens an empty chat; it is created on the server by its first message.
  await byTestId(page, "new-chat").click();
  await byTestId(page, "empty-chat").waitFor();
  assert.equal(currentContextId(page), null);
  await turn(page, "hello, new chat");
  const second = currentContextId(page);
  assert.ok(second && second !== first);
  assert.deepEqual(await texts(messages(page, "user")), ["hello, new chat"]);

  const items = page.locator('[data-testid="chat-item"]');
  const item = page.locator(`[data-testid="chat-item"][data-context-id="${second}"]`);
  await item.waitFor();
  assert.equal(await items.count(), 2);
  assert.match(await item.innerText(), /hello, new chat/, "the chat is named after its first message");

  // Switching back shows the first chat's own messages.
  await page.locator(`[data-testid="chat-item"][data-context-id="${first}"] [data-testid="chat-item-open"]`).click();
  await waitForReply(page, "a message with no chat open");
  assert.deepEqual(await texts(messages(page, "user")), ["a message with no chat open"]);
  await screenshot(page);
  assertLocalOnly();
});

test("cancel: Stop ends a running reply and keeps the partial text", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await send(page, "/slow 40");
  await page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]').waitFor();
  await byTestId(page, "cancel-button").click();

  const cancelled = page.locator('[data-testid="message"][data-role="assistant"][data-status="cancelled"]');
  await cancelled.waitFor();
  await waitForStatus(page, "idle");
  assert.equal(await byTestId(page, "cancel-button").count(), 0, "Stop shows only while a turn runs");
  const partial = await cancelled.locator('[data-testid="message-text"]').innerText();
  assert.ok(partial.length > 0, "the partial reply is kept");

  await page.reload();
  await cancelled.waitFor();
  assert.equal(await cancelled.locator('[data-testid="message-text"]').innerText(), partial);
  await screenshot(page);
  assertLocalOnly();
});

test("failed turn: the error shows with Retry, which re-runs the turn", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await send(page, "/fail fatal");
  const failure = byTestId(page, "chat-failed");
  await failure.waitFor();
  assert.match(await failure.innerText(), /scripted fatal failure/);
  await screenshot(page, "-failed");

  // The scripted fatal failure is permanent, so the re-run fails again; what matters is
  // that Retry dispatched the retry action and the chat went through a turn once more.
  const retried = page.waitForResponse((r) => r.url().endsWith("/actions/retry") && r.request().method() === "POST");
  await byTestId(failure, "chat-retry").click();
  assert.ok((await retried).ok(), "the retry action was accepted");
  await failure.waitFor();
  await waitForStatus(page, "failed");
  assert.equal(await byTestId(page, "error-banner").count(), 0, "a failed turn is not an app error");
  await screenshot(page);
  assertLocalOnly();
});
