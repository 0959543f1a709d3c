// Signing out forgets the user's unsent messages: a send queued while offline is neither
// shown nor sent after Sign out, even when the same user signs in again.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { byTestId, launchBrowser, messages, send, setup, texts, turn } from "./harness.mjs";

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
  // The chat shows again once the new session's client has loaded it.
  await messages(page, "user").filter({ hasText: "hello from alice" }).waitFor();
  await turn(page, "back again");
  assert.deepEqual(await texts(messages(page, "user")), ["hello from alice", "back again"], "the forgotten send never went");
  assertLocalOnly();
});
