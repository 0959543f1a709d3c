// What the sync loop promises a person: deleted chats go quiet, hidden tabs cost nothing,
// and two tabs on one chat converge.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  POLL_MS, byTestId, currentContextId, isStateRequest, launchBrowser, messages, openApp, send,
  setHidden, setup, turn, waitForReply,
} from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

const TEST = { timeout: 90_000 };

/** Resolves after `count` state requests for `contextId`, or rejects after `timeoutMs`. */
function stateRequests(page, contextId, count, timeoutMs) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const onRequest = (r) => {
      if (isStateRequest(r.url(), contextId) && ++seen >= count) done(resolve);
    };
    const timer = setTimeout(() => done(() => reject(new Error(`saw ${seen} of ${count} polls of ${contextId}`))), timeoutMs);
    const done = (settle) => {
      clearTimeout(timer);
      page.off("request", onRequest);
      settle();
    };
    page.on("request", onRequest);
  });
}

test("delete: the chat disappears and is never polled again, here or in another tab", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await turn(page, "keep this chat");
  const kept = currentContextId(page);
  await byTestId(page, "new-chat").click();
  await byTestId(page, "empty-chat").waitFor();
  await turn(page, "delete this chat");
  const doomed = currentContextId(page);

  // A second tab stays on the chat while the first deletes it.
  const other = await context.newPage();
  await openApp(other, server.baseUrl, doomed);
  await waitForReply(other, "delete this chat");

  const doomedItem = page.locator(`[data-testid="chat-item"][data-context-id="${doomed}"]`);
  await byTestId(doomedItem, "chat-item-delete").click();
  await byTestId(page, "confirm-dialog").waitFor();
  // Cancelling keeps it.
  await byTestId(page, "confirm-cancel").click();
  assert.equal(await doomedItem.count(), 1);

  await byTestId(doomedItem, "chat-item-delete").click();
  await byTestId(page, "confirm-ok").click();
  // The item leaves the list at once; closing the Undo toast carries the delete out now
  // (else it would go after a few seconds). The other tab learns of it from its next poll;
  // from then on, neither may ask for that chat again.
  await doomedItem.waitFor({ state: "detached" });
  await byTestId(page, "undo-dismiss").click();
  await byTestId(other, "chat-deleted").waitFor({ timeout: 10 * POLL_MS });
  const askedAfterDelete = [];
  for (const p of [page, other]) {
    p.on("request", (r) => {
      if (new URL(r.url()).pathname.startsWith(`/api/contexts/${doomed}`)) askedAfterDelete.push(r.url());
    });
  }

  // The deleting tab moves to the remaining chat; its polls are the clock that shows the
  // deleted chat would have been polled by now if polling had not stopped.
  await waitForReply(page, "keep this chat");
  assert.equal(currentContextId(page), kept);
  // A held long-poll only answers when the chat changes, so a turn makes the polls go.
  await Promise.all([stateRequests(page, kept, 3, 20 * POLL_MS), turn(page, "still polling")]);
  assert.deepEqual(askedAfterDelete, [], "no requests for the deleted chat");
  assert.equal(await page.locator('[data-testid="chat-item"]').count(), 1);
  await other.locator(`[data-testid="chat-item"][data-context-id="${doomed}"]`).waitFor({ state: "detached" });
  await screenshot(other, "-other-tab");

  // It stays gone after a reload too.
  await page.reload();
  await waitForReply(page, "keep this chat");
  assert.equal(await doomedItem.count(), 0);
  await screenshot(page);
  assertLocalOnly();
});

test("hidden tab: no requests while hidden, polling resumes when visible", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await turn(page, "watch me poll");
  const id = currentContextId(page);

  const whileHidden = [];
  const record = (r) => new URL(r.url()).pathname.startsWith("/api/") && whileHidden.push(r.url());
  await setHidden(page, true);
  page.on("request", record);
  await page.locator('[data-testid="sync-status"][data-phase="paused"]').waitFor();
  await screenshot(page, "-hidden");
  // Absence is the assertion, so this wait is a fixed number of base poll intervals.
  await page.waitForTimeout(4 * POLL_MS);
  page.off("request", record);
  assert.deepEqual(whileHidden, [], "a hidden tab makes no API requests");

  // Visible again: a poll goes out at once, not after the backed-off interval.
  const resumed = stateRequests(page, id, 1, 2 * POLL_MS);
  await setHidden(page, false);
  await resumed;
  await page.locator('[data-testid="sync-status"][data-phase="synced"]').waitFor();
  await screenshot(page);
  assertLocalOnly();
});

test("two tabs on one chat see each other's messages", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await turn(page, "hello from tab one");
  const id = currentContextId(page);

  const other = await context.newPage();
  await openApp(other, server.baseUrl, id);
  await waitForReply(other, "hello from tab one");

  await send(other, "hello from tab two");
  await waitForReply(other, "hello from tab two");
  // The first tab learns of it only by polling.
  await waitForReply(page, "hello from tab two");

  const order = (p) => messages(p, "user").locator('[data-testid="message-text"]').allInnerTexts();
  assert.deepEqual(await order(page), ["hello from tab one", "hello from tab two"]);
  assert.deepEqual(await order(other), await order(page));
  await screenshot(page);
  await screenshot(other, "-second-tab");
  assertLocalOnly();
});

test("scrolling: stays at the bottom, or shows a new-messages badge when scrolled up", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);

  // Shift+Enter adds a line; Enter sends. Tall messages make the list overflow quickly.
  const input = byTestId(page, "composer-input");
  for (let i = 1; i <= 4; i++) {
    await input.fill(`message ${i}`);
    for (let line = 0; line < 4; line++) await input.press("Shift+Enter");
    await input.pressSequentially("end");
    await input.press("Enter");
    await waitForReply(page, `message ${i}`);
  }
  assert.equal(await messages(page, "user").count(), 4, "Shift+Enter never sent");
  assert.match(await messages(page, "user").first().locator('[data-testid="message-text"]').innerText(), /^message 1\n+end$/);

  const list = byTestId(page, "message-list");
  const distanceFromBottom = () => list.evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);
  assert.ok((await distanceFromBottom()) < 2, "pinned to the bottom while at the bottom");

  await list.evaluate((el) => (el.scrollTop = 0));
  const other = await context.newPage();
  await openApp(other, server.baseUrl, currentContextId(page));
  await turn(other, "news from elsewhere");

  const badge = byTestId(page, "new-messages-badge");
  await badge.waitFor();
  assert.equal(await list.evaluate((el) => el.scrollTop), 0, "a reader who scrolled up is not moved");
  await screenshot(page, "-badge");
  await badge.click();
  await badge.waitFor({ state: "detached" });
  assert.ok((await distanceFromBottom()) < 2);
  await waitForReply(page, "news from elsewhere");
  await screenshot(page);

  // The reader's own message brings the list down to it, even from far up.
  await list.evaluate((el) => (el.scrollTop = 0));
  await page.waitForFunction(() => document.querySelector('[data-testid="message-list"]').scrollTop === 0);
  await send(page, "my own message");
  await waitForReply(page, "my own message");
  assert.ok((await distanceFromBottom()) < 2, "at the bottom after sending");
  assertLocalOnly();
});
