// What makes the app pleasant to use: markdown replies with copyable code, chat titles and
// search, a list that pages on, a phone layout, keyboard use, and accessibility.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";
import {
  DESKTOP, PHONE, axeViolations, byTestId, createChat, currentContextId, launchBrowser, messages,
  openApp, send, setup, texts, turn, waitForReply, waitForStatus,
} from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

const TEST = { timeout: 90_000 };
const CLIPBOARD = { permissions: ["clipboard-read", "clipboard-write"] };

// `/markdown` makes the scripted model answer with GFM (bold, a table, a js code block)
// and raw HTML that must not render.
const MARKDOWN = "/markdown";

/** The page scrolls sideways only if something is wider than the viewport. */
const overflowsSideways = (page) =>
  page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);

async function assertAccessible(page, view) {
  const found = await axeViolations(page);
  assert.deepEqual(found, [], `${view}: serious or critical accessibility violations`);
}

for (const [name, viewport] of [["desktop", DESKTOP], ["390px", PHONE]]) {
  test(`markdown (${name}): a reply renders GFM with highlighted, copyable code and no raw HTML`, TEST, async (t) => {
    const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport, ...CLIPBOARD });
    await openApp(page, server.baseUrl);
    // --auth none (the default): no sign-in, and nobody named or to sign out.
    assert.equal(await byTestId(page, "sign-in").count(), 0);
    assert.equal(await byTestId(page, "account").count(), 0);
    await assertAccessible(page, "empty chat");
    await screenshot(page, "-empty");

    await send(page, MARKDOWN);
    const reply = page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"]').last();
    await reply.waitFor();
    await waitForStatus(page, "idle");
    const text = byTestId(reply, "message-text");
    assert.equal(await text.locator("strong").first().innerText(), "bold");
    assert.equal(await text.locator("table td").first().innerText(), "1");
    const code = byTestId(text, "code-block");
    assert.equal(await code.locator("code.language-js").count(), 1);
    assert.ok((await code.locator("code .hljs-keyword").count()) > 0, "the code is highlighted");
    // Raw HTML stays out: no element from it, no script run.
    assert.equal(await text.locator("img, b").count(), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined);

    await byTestId(code, "code-copy").click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "const answer = 40 + 2;");
    await byTestId(reply, "message-copy").click();
    assert.match(await page.evaluate(() => navigator.clipboard.readText()), /^Here is \*\*bold\*\*/);
    // The user's own message shows exactly what was typed.
    assert.equal(await messages(page, "user").last().locator('[data-testid="message-text"]').innerText(), MARKDOWN);

    assert.equal(await overflowsSideways(page), false, "nothing overflows horizontally");
    await assertAccessible(page, "chat with a markdown reply");
    await screenshot(page, "-chat");
    await page.emulateMedia({ colorScheme: "dark" });
    await assertAccessible(page, "chat in dark mode");
    await screenshot(page, "-dark");
    assertLocalOnly();
  });
}

/** Waits until a message of `role` shows the version switcher at `position` ("2/3"). */
const versionShown = (page, role, position) =>
  page.locator(`[data-testid="message"][data-role="${role}"] [data-testid="branch-position"]`).filter({ hasText: position }).waitFor();

for (const [name, viewport] of [["desktop", DESKTOP], ["390px", PHONE]]) {
  test(`branches (${name}): edit, regenerate and switch versions; a reload keeps the tree`, TEST, async (t) => {
    const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport });
    await openApp(page, server.baseUrl);
    await turn(page, "the first question");
    assert.equal(await byTestId(page, "branch-switcher").count(), 0, "one version: no switcher");

    // Edit: the new version replaces the old one on screen and its turn runs.
    await byTestId(messages(page, "user").last(), "message-edit").click();
    const editor = byTestId(page, "message-editor-input");
    assert.equal(await editor.inputValue(), "the first question");
    await editor.fill("the second question");
    await editor.press("Enter");
    await waitForReply(page, "the second question");
    await waitForStatus(page, "idle");
    assert.deepEqual(await texts(messages(page, "user")), ["the second question"]);
    await versionShown(page, "user", "2/2");

    // Regenerate: a second version of the reply.
    await byTestId(messages(page, "assistant").last(), "message-regenerate").click();
    await versionShown(page, "assistant", "2/2");
    await waitForStatus(page, "idle");
    assert.equal(await messages(page, "assistant").count(), 1);
    assert.equal(await overflowsSideways(page), false, "nothing overflows horizontally");
    await assertAccessible(page, "chat with versions");
    await screenshot(page, "-versions");

    // "<" on the question goes back to the first version and its own reply.
    await byTestId(messages(page, "user").last(), "branch-previous").click();
    await versionShown(page, "user", "1/2");
    assert.deepEqual(await texts(messages(page, "user")), ["the first question"]);
    assert.match((await texts(messages(page, "assistant")))[0], /the first question/);
    assert.equal(await byTestId(messages(page, "assistant").last(), "branch-switcher").count(), 0);
    assert.equal(await byTestId(messages(page, "user").last(), "branch-previous").isDisabled(), true);

    // The server keeps the tree and the chosen path: a reload shows the same.
    await page.reload();
    await byTestId(page, "chat-panel").waitFor();
    await versionShown(page, "user", "1/2");
    assert.deepEqual(await texts(messages(page, "user")), ["the first question"]);

    // ">" comes back to the edit with its regenerated reply.
    await byTestId(messages(page, "user").last(), "branch-next").click();
    await versionShown(page, "user", "2/2");
    await versionShown(page, "assistant", "2/2");
    assert.deepEqual(await texts(messages(page, "user")), ["the second question"]);

    // While a turn runs the tree cannot change: no edit or regenerate, switchers disabled.
    await send(page, "/slow 400");
    await waitForStatus(page, "running");
    assert.equal(await page.locator('[data-testid="message-edit"], [data-testid="message-regenerate"]').count(), 0);
    assert.equal(await byTestId(messages(page, "user").first(), "branch-previous").isDisabled(), true);
    assertLocalOnly();
  });
}

test("streaming markdown: finished blocks keep their DOM while the reply grows", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, { chunkDelayMs: 40 });
  await openApp(page, server.baseUrl);
  await send(page, "/slow 60");
  const streaming = page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
  await streaming.waitFor();
  // Mark the first paragraph node; if it were re-created the mark would be gone.
  await page.waitForFunction(() => document.querySelector('[data-status="streaming"] .markdown p'));
  await page.evaluate(() => (document.querySelector('[data-status="streaming"] .markdown p').dataset.mark = "kept"));
  await page.locator('[data-role="assistant"][data-status="complete"]').waitFor({ timeout: 30_000 });
  // The whole /slow reply is one paragraph, so this checks the streamed block was updated
  // in place rather than replaced.
  assert.equal(await page.locator('[data-role="assistant"] .markdown p[data-mark="kept"]').count(), 1);
  // The announcer told screen readers about the finished reply.
  assert.match(await byTestId(page, "announcer").innerText(), /^Assistant: chunk 1/);
  await screenshot(page);
  assertLocalOnly();
});

test("stop: Escape stops a running reply, Shift+Escape focuses the composer, Ctrl+Shift+O opens a new chat", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await send(page, "/slow 60");
  await page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]').waitFor();
  await page.locator("body").click({ position: { x: 5, y: 400 } });
  await page.keyboard.press("Escape");
  await page.locator('[data-role="assistant"][data-status="cancelled"]').waitFor();
  await waitForStatus(page, "idle");

  await page.keyboard.press("Shift+Escape");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "composer-input");
  const chat = currentContextId(page);
  await page.keyboard.press("Control+Shift+O");
  await byTestId(page, "empty-chat").waitFor();
  assert.equal(currentContextId(page), null);
  assert.notEqual(chat, null);
  await screenshot(page);
  assertLocalOnly();
});

test("rename: inline rename persists and shows in other tabs; Escape abandons an edit", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await turn(page, "name me later");
  const id = currentContextId(page);
  const other = await context.newPage();
  await openApp(other, server.baseUrl, id);

  const item = page.locator(`[data-testid="chat-item"][data-context-id="${id}"]`);
  await byTestId(item, "chat-item-rename").click();
  const input = byTestId(item, "chat-item-rename-input");
  assert.equal(await input.evaluate((el) => el === document.activeElement), true, "the input takes focus");
  await input.fill("Trip to Lisbon");
  await input.press("Enter");
  await item.filter({ hasText: "Trip to Lisbon" }).waitFor();
  assert.equal(await page.locator(".chat-title").innerText(), "Trip to Lisbon");
  // The other tab hears of it without a reload.
  await other.locator(`[data-testid="chat-item"][data-context-id="${id}"]`).filter({ hasText: "Trip to Lisbon" }).waitFor();

  // Escape abandons an edit.
  await byTestId(item, "chat-item-rename").click();
  await byTestId(item, "chat-item-rename-input").fill("never saved");
  await byTestId(item, "chat-item-rename-input").press("Escape");
  await page.reload();
  await item.filter({ hasText: "Trip to Lisbon" }).waitFor();
  assert.equal(await item.filter({ hasText: "never saved" }).count(), 0);
  await screenshot(page);
  assertLocalOnly();
});

test("search and paging: the search box finds chats by title and text; the list scrolls on", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  // More chats than one page (30), created through the API.
  for (let i = 0; i < 45; i++) await createChat(server, `Filler chat ${i}`);
  await createChat(server, "Penguin facts");
  await openApp(page, server.baseUrl);
  const items = page.locator('[data-testid="chat-item"]');
  await items.first().waitFor();
  assert.equal(await items.count(), 30, "one page at first");
  await byTestId(page, "chat-list-more").scrollIntoViewIfNeeded();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="chat-item"]').length === 46);
  assert.equal(await byTestId(page, "chat-list-more").count(), 0, "no more pages");

  // A chat found by its message text, not its title.
  await byTestId(page, "new-chat").click();
  await turn(page, "tell me about walruses");
  await byTestId(page, "chat-search").fill("walrus");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="chat-item"]').length === 1);
  assert.match(await items.first().innerText(), /tell me about walruses/);
  // Every result shows where it matched, not only the open chat: the server's snippet, the
  // match highlighted, and text that looks like markup stays text.
  const other = await createChat(server, "Sea mammals");
  const sent = await fetch(`${server.baseUrl}/api/contexts/${other}/actions/send_message`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ content: 'do walruses <img src="x" data-injected="1"> sleep' }),
  });
  assert.equal(sent.status, 200, await sent.text());
  await byTestId(page, "chat-search").fill("walruses");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="chat-item"]').length === 2);
  const matchOf = (id) => byTestId(page.locator(`[data-testid="chat-item"][data-context-id="${id}"]`), "chat-item-match");
  for (const id of [other, currentContextId(page)]) {
    assert.equal(await matchOf(id).locator("mark").first().innerText(), "walruses", id);
  }
  const foreign = matchOf(other);
  assert.match(await foreign.innerText(), /do walruses <img src="x" data-injected="1"> sleep/);
  assert.equal(await page.locator('[data-injected], [data-testid="chat-list"] img').count(), 0, "no markup from a snippet");
  await assertAccessible(page, "search results with snippets");
  // The list below is about the chats before this one.
  const removed = await fetch(`${server.baseUrl}/api/contexts/${other}`, { method: "DELETE" });
  assert.equal(removed.status, 204);
  await byTestId(page, "chat-search").fill("PENGU");
  await items.filter({ hasText: "Penguin facts" }).waitFor();
  assert.equal(await items.count(), 1);
  // Query syntax is only words: no error, just no match.
  await byTestId(page, "chat-search").fill('"NEAR( zebra');
  await page.getByText("No chats match").waitFor();
  assert.equal(await byTestId(page, "error-banner").count(), 0);
  await assertAccessible(page, "chat list with a search");
  await screenshot(page);

  // The open chat is scrolled into view in the list, far down as it is.
  const far = await page.evaluate(async () => (await (await fetch("/api/contexts?limit=30")).json()).contexts.find((c) => c.title === "Filler chat 20").id);
  await page.goto(`${server.baseUrl}/#${far}`);
  await page.reload();
  const farItem = page.locator(`[data-testid="chat-item"][data-context-id="${far}"]`);
  await farItem.waitFor();
  await page.waitForFunction((id) => {
    const item = document.querySelector(`[data-testid="chat-item"][data-context-id="${id}"]`).getBoundingClientRect();
    const list = document.querySelector('[data-testid="chat-list"]').getBoundingClientRect();
    // Scrolled to the nearest edge, the item may overhang it by a fraction of a pixel
    // (rows of fractional height): 0.25 px was seen with one more chat above it.
    return item.top >= list.top - 1 && item.bottom <= list.bottom + 1;
  }, far);
  assertLocalOnly();
});

test("delete: the confirm dialog traps focus and gives it back on cancel", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await createChat(server, "Keep me");
  await openApp(page, server.baseUrl);
  const remove = byTestId(page, "chat-item-delete").first();
  await remove.focus();
  await page.keyboard.press("Enter");
  const dialog = byTestId(page, "confirm-dialog");
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "confirm-cancel");
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press("Tab");
    assert.equal(await dialog.evaluate((d) => d.contains(document.activeElement)), true, "focus stays in the dialog");
  }
  await assertAccessible(page, "confirm dialog");
  await screenshot(page, "-dialog");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await remove.evaluate((b) => b === document.activeElement), true, "focus is back on the delete button");
  assert.equal(await page.locator('[data-testid="chat-item"]').count(), 1);
  assertLocalOnly();
});

test("mobile: at 390 px the chat list is a drawer that opens, traps focus, and closes on choosing", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport: PHONE });
  await openApp(page, server.baseUrl);
  await turn(page, "a fairly long first message so that the chat title has to be cut somewhere sensible");
  const first = currentContextId(page);
  await byTestId(page, "drawer-open").click();
  await byTestId(page, "new-chat").click();
  await turn(page, "second chat");
  const sidebar = byTestId(page, "sidebar");
  assert.equal(await sidebar.isVisible(), false, "the drawer starts closed");
  assert.equal(await overflowsSideways(page), false);
  await screenshot(page, "-chat");

  await byTestId(page, "drawer-open").click();
  await sidebar.waitFor({ state: "visible" });
  assert.equal(await sidebar.getAttribute("role"), "dialog");
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press("Tab");
    assert.equal(await sidebar.evaluate((s) => s.contains(document.activeElement)), true, "focus stays in the drawer");
  }
  await assertAccessible(page, "open drawer");
  await screenshot(page, "-drawer");
  await page.locator(`[data-testid="chat-item"][data-context-id="${first}"] [data-testid="chat-item-open"]`).click();
  await waitForReply(page, "a fairly long first message");
  await sidebar.waitFor({ state: "hidden" });
  assert.equal(currentContextId(page), first);
  assert.equal(await overflowsSideways(page), false);
  assertLocalOnly();
});

test("first message: when its chat cannot be created, the text stays in the composer with the error", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser);
  await openApp(page, server.baseUrl);
  await page.route("**/api/contexts", (route) =>
    route.request().method() === "POST"
      ? route.fulfill({ status: 503, contentType: "application/json", body: '{"error":{"code":"unavailable","message":"database down"}}' })
      : route.continue(),
  );
  await send(page, "please do not lose me");
  await byTestId(page, "error-banner").waitFor();
  assert.match(await byTestId(page, "error-banner").innerText(), /database down/);
  assert.equal(await byTestId(page, "composer-input").inputValue(), "please do not lose me");
  assert.equal(await messages(page).count(), 0);
  assert.equal(currentContextId(page), null);
  await screenshot(page);

  await page.unroute("**/api/contexts");
  await byTestId(page, "composer-input").press("Enter");
  await waitForReply(page, "please do not lose me");
  assert.ok(currentContextId(page));
  assertLocalOnly();
});

test("queue: messages sent during a turn wait under it and can be removed", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, { chunkDelayMs: 40 });
  await openApp(page, server.baseUrl);
  await send(page, "/slow 80");
  await page.locator('[data-role="assistant"][data-status="streaming"]').waitFor();
  const view = await page.evaluate(() => document.querySelector('[data-testid="chat-panel"]')?.dataset.status);
  assert.equal(view, "running");
  await send(page, "queued one");
  await send(page, "queued two");
  const queued = byTestId(page, "queued-message");
  await queued.nth(1).waitFor({ timeout: 5_000 });
  await assertAccessible(page, "queued messages");
  await screenshot(page);
  await byTestId(queued.filter({ hasText: "queued one" }), "queued-remove").click();
  await queued.filter({ hasText: "queued one" }).waitFor({ state: "detached" });
  await waitForReply(page, "queued two");
  assert.equal(await messages(page, "user").filter({ hasText: "queued one" }).count(), 0, "the removed message never ran");
  assertLocalOnly();
});

// ---- sign-in with --auth jwt --------------------------------------------------------

const JWT_SECRET = "browser-test-secret-of-at-least-32-bytes";
const JWT_SERVER = { args: ["--auth", "jwt", "--jwt-secret", JWT_SECRET] };
/** The server accepts a token this long after its `exp` (clock skew). */
const JWT_LEEWAY_S = 60;

/** A token as a developer mints one: `chatsync token --sub NAME --secret S --ttl TTL`. */
const cliToken = (sub, ttl) =>
  execFileSync(process.env.CHATSYNC_BIN, ["token", "--sub", sub, "--secret", JWT_SECRET, "--ttl", ttl], { encoding: "utf8" }).trim();

/**
 * An HS256 token the server stops accepting `seconds` from now. The CLI cannot mint one:
 * its `exp` is at least a second ahead and the server adds its leeway to that.
 */
function expiringToken(sub, seconds) {
  const now = Math.floor(Date.now() / 1000);
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, iat: now, exp: now + seconds - JWT_LEEWAY_S })}`;
  return `${unsigned}.${createHmac("sha256", JWT_SECRET).update(unsigned).digest("base64url")}`;
}

/** Polls `GET /api/me` with `token` until the server refuses it. */
async function untilRefused(server, token, deadlineMs = 30_000) {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const r = await fetch(`${server.baseUrl}/api/me`, { headers: { authorization: `Bearer ${token}` } });
    if (r.status === 401) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the token was still accepted at the deadline");
}

async function signIn(page, token) {
  await byTestId(page, "sign-in-token").fill(token);
  await byTestId(page, "sign-in-submit").click();
  await byTestId(page, "sign-in").waitFor({ state: "detached" });
}

test("sign-in (--auth jwt): a pasted token signs in, Sign out forgets it, an expired one asks again and loses nothing", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, JWT_SERVER);
  // Once signed in, every API request carries the token.
  let watching = false;
  const bare = [];
  page.on("request", async (r) => {
    if (!watching || !new URL(r.url()).pathname.startsWith("/api/")) return;
    if (!(await r.allHeaders()).authorization?.startsWith("Bearer ")) bare.push(r.url());
  });

  await page.goto(`${server.baseUrl}/`);
  const dialog = byTestId(page, "sign-in");
  await dialog.waitFor();
  assert.match(await byTestId(page, "sign-in-reason").innerText(), /needs an access token/);
  assert.match(await dialog.innerText(), /chatsync token --sub NAME --secret S --ttl 1h/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "sign-in-token", "focus starts in the field");
  assert.equal(await byTestId(page, "chat-panel").count(), 0);
  await assertAccessible(page, "sign-in");
  await screenshot(page, "-sign-in");

  // A wrong token is refused in the dialog, which stays; Escape does not close it.
  await byTestId(page, "sign-in-token").fill("not-a-token");
  await byTestId(page, "sign-in-submit").click();
  assert.match(await byTestId(page, "sign-in-error").innerText(), /The server refused this token/);
  await page.keyboard.press("Escape");
  assert.equal(await dialog.count(), 1);
  await assertAccessible(page, "sign-in with an error");

  watching = true;
  await signIn(page, cliToken("alice", "1h"));
  assert.equal(await byTestId(page, "signed-in-user").innerText(), "alice");
  await turn(page, "hello from alice");
  await assertAccessible(page, "signed in");
  await screenshot(page, "-signed-in");
  watching = false;
  assert.deepEqual(bare, [], "requests without the token");

  // Sign out: the token is gone, the app with it, and the sign-in is back.
  await byTestId(page, "sign-out").click();
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem("chatsync-token")), null);
  assert.equal(await byTestId(page, "chat-panel").count(), 0);
  assert.match(await byTestId(page, "sign-in-reason").innerText(), /needs an access token/);

  // A short-lived token: alice's chat is back; once the token expires, the next request
  // (a search here) brings the sign-in up over the app, and what was typed stays.
  const first = expiringToken("alice", 5);
  await signIn(page, first);
  await waitForReply(page, "hello from alice");
  await untilRefused(server, first);
  await byTestId(page, "composer-input").fill("draft kept");
  await byTestId(page, "chat-search").fill("hello");
  await dialog.waitFor();
  assert.equal(await byTestId(page, "sign-in-reason").innerText(), "Your session expired, paste a new token.");
  await assertAccessible(page, "session expired");
  await screenshot(page, "-expired");
  const second = expiringToken("alice", 5);
  await signIn(page, second);
  assert.equal(await byTestId(page, "composer-input").inputValue(), "draft kept");
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "chat-search", "focus goes back to where it was");

  // A message sent with an expired token waits in the queue; a new token sends it.
  await untilRefused(server, second);
  await byTestId(page, "composer-input").press("Enter");
  await dialog.waitFor();
  await signIn(page, cliToken("alice", "1h"));
  await waitForReply(page, "draft kept");
  await waitForStatus(page, "idle");
  assert.deepEqual(await texts(messages(page, "user")), ["hello from alice", "draft kept"]);
  assert.equal(await byTestId(page, "error-banner").count(), 0);

  // A send queued when alice's session ends stays hers: carol, signing in over it, neither
  // sees nor sends it (it would be refused as hers and lost); alice's next sign-in sends it.
  await byTestId(page, "sign-out").click();
  const last = expiringToken("alice", 5);
  await signIn(page, last);
  await waitForReply(page, "draft kept");
  await untilRefused(server, last);
  await send(page, "queued for alice");
  await dialog.waitFor();
  await signIn(page, cliToken("carol", "1h"));
  assert.equal(await byTestId(page, "signed-in-user").innerText(), "carol");
  await turn(page, "hello from carol");
  assert.deepEqual(await texts(messages(page, "user")), ["hello from carol"], "nothing of alice's shows");
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.includes("user:alice")).length), 1, "alice's queue is kept");
  await byTestId(page, "sign-out").click();
  await signIn(page, cliToken("alice", "1h"));
  await waitForReply(page, "queued for alice");
  assert.deepEqual(await texts(messages(page, "user")), ["hello from alice", "draft kept", "queued for alice"]);
  assertLocalOnly();
});

test("sign-in (--auth proxy): the proxy's user is shown, no sign-in, no Sign out; an ended proxy session offers a reload", TEST, async (t) => {
  // The authenticating proxy in front sets the header on every request; here the browser does.
  const { server, page, assertLocalOnly } = await setup(t, browser, { args: ["--auth", "proxy"] }, {
    extraHTTPHeaders: { "X-Forwarded-User": "bob" },
  });
  await openApp(page, server.baseUrl);
  assert.equal(await byTestId(page, "signed-in-user").innerText(), "bob");
  assert.equal(await byTestId(page, "sign-out").count(), 0);
  assert.equal(await byTestId(page, "sign-in").count(), 0);
  await turn(page, "hello from bob");

  // The proxy's session ends: its header stops coming. The app says so and offers the
  // proxy's own sign-in (a reload), not a token field it could do nothing with.
  const withoutUser = (route) => {
    const headers = { ...route.request().headers() };
    delete headers["x-forwarded-user"];
    return route.continue({ headers });
  };
  await page.route("**/api/**", withoutUser);
  await byTestId(page, "chat-search").fill("hello");
  await byTestId(page, "session-ended").waitFor();
  assert.equal(await byTestId(page, "sign-in-token").count(), 0);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "session-ended-reload");
  await assertAccessible(page, "proxy session ended");
  await page.unroute("**/api/**", withoutUser);
  await byTestId(page, "session-ended-reload").click();
  await waitForReply(page, "hello from bob");
  assert.equal(await byTestId(page, "signed-in-user").innerText(), "bob");
  assert.equal(await byTestId(page, "session-ended").count(), 0);
  assertLocalOnly();
});
