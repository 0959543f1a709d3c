// Signing out forgets the user's unsent messages: a send queued while offline is neither
// shown nor sent after Sign out, even when the same user signs in again. What is typed
// while the app loads after a sign-in or a reload stays in the message box.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { byTestId, currentContextId, launchBrowser, messages, send, setup, texts, turn, waitForReply } from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

const SECRET = "browser-test-secret-of-at-least-32-bytes";
const token = (sub) =>
  execFileSync(process.env.CHATSYNC_BIN, ["token", "--sub", sub, "--secret", SECRET, "--ttl", "1h"], { encoding: "utf8" }).trim();

async function signIn(page, value) {
  await byTestId(page, "sign-in-token").fill(value);
  await byTestId(page, "sign-in-submit").click();
  await byTestId(page, "sign-in").waitFor({ state: "detached" });
}

const queuedFor = (page, user) =>
  page.evaluate((suffix) => Object.keys(localStorage).filter((k) => k.startsWith("chatsync-queue:") && k.endsWith(suffix)).length, ` user:${user}`);

test("Sign out clears the user's offline queue", { timeout: 90_000 }, async (t) => {
  const { server, context, page, assertLocalOnly } = await setup(t, browser, { args: ["--auth", "jwt", "--jwt-secret", SECRET] });
  await page.goto(`${server.baseUrl}/`);
  await signIn(page, token("alice"));
  await turn(page, "hello from alice");

  await context.setOffline(true);
  await send(page, "queued while offline");
  await messages(page, "user").filter({ hasText: "queued while offline" }).waitFor();
  assert.equal(await queuedFor(page, "alice"), 1, "the send waits in alice's queue");

  await byTestId(page, "sign-out").click();
  await byTestId(page, "sign-in").waitFor();
  assert.equal(await queuedFor(page, "alice"), 0, "Sign out forgot it");

  await context.setOffline(false);
  await signIn(page, token("alice"));
  // Typed at once, while the new session loads the chat: it goes to the chat used last.
  await turn(page, "back again");
  assert.deepEqual(await texts(messages(page, "user")), ["hello from alice", "back again"], "the forgotten send never went");
  assertLocalOnly();
});

/**
 * Holds the chat list's answers (with `chats`, every read of a chat too) until the returned
 * function is called.
 */
async function holdChatList(page, { chats = false } = {}) {
  let release;
  const released = new Promise((resolve) => (release = resolve));
  await page.route(
    (url) => url.pathname === "/api/contexts" || (chats && url.pathname.startsWith("/api/contexts/")),
    async (route) => {
      if (route.request().method() === "GET") await released;
      await route.continue();
    },
  );
  return release;
}

test("Text typed while the app loads stays in the message box", { timeout: 90_000 }, async (t) => {
  const { server, page, assertLocalOnly } = await setup(t, browser);
  await page.goto(`${server.baseUrl}/`);
  await turn(page, "the first chat");
  const composer = byTestId(page, "composer-input");
  const chatShown = () => messages(page, "user").filter({ hasText: "the first chat" }).waitFor();

  // A reload: the app reopens the chat used last. What is typed before the list of chats
  // has loaded is that chat's draft, and stays when the list comes.
  let release = await holdChatList(page);
  await page.goto(`${server.baseUrl}/`);
  await composer.fill("typed while loading");
  release();
  await chatShown();
  await byTestId(page, "chat-item").first().waitFor();
  assert.equal(await composer.inputValue(), "typed while loading", "the text stays");
  await composer.press("Enter");
  await waitForReply(page, "typed while loading");
  assert.deepEqual(await texts(messages(page, "user")), ["the first chat", "typed while loading"]);

  // A browser that does not know the chat used last: the app would open the latest chat
  // once the list comes, but the user has begun typing in the new chat, and stays there.
  await page.evaluate(() => localStorage.clear());
  release = await holdChatList(page);
  await page.goto(`${server.baseUrl}/`);
  await composer.fill("typed in a fresh browser");
  release();
  await byTestId(page, "chat-item").first().waitFor();
  assert.equal(await composer.inputValue(), "typed in a fresh browser", "the text stays");
  await composer.press("Enter");
  await waitForReply(page, "typed in a fresh browser");
  assert.deepEqual(await texts(messages(page, "user")), ["typed in a fresh browser"], "sent in the new chat it was typed in");

  // The chat used last was deleted elsewhere: what is typed in it before the app finds
  // out goes with the user to the chat opened instead.
  const gone = currentContextId(page);
  const deleted = await fetch(`${server.baseUrl}/api/contexts/${gone}`, { method: "DELETE" });
  assert.equal(deleted.status, 204);
  release = await holdChatList(page, { chats: true });
  await page.goto(`${server.baseUrl}/`);
  await composer.fill("typed in a chat deleted elsewhere");
  assert.equal(currentContextId(page), gone, "the chat used last opened at once");
  release();
  await chatShown();
  assert.notEqual(currentContextId(page), gone);
  assert.equal(await composer.inputValue(), "typed in a chat deleted elsewhere", "the text came along");
  assertLocalOnly();
});
