// How the app behaves for a person at the keyboard, with a screen reader, on a phone and
// offline: queued sends that say they will go out, drafts and errors per chat, Escape and
// focus where they belong, a list in order of use, and the small things (code labels,
// export, theme, examples). Each test starts one server and walks through many states.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import {
  POLL_MS, PHONE, axeViolations, byTestId, createChat, currentContextId, launchBrowser, messages,
  openApp, send, setup, turn, waitForReply, waitForStatus,
} from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

const TEST = { timeout: 120_000 };
const WIDE = { width: 1280, height: 800 };
const CLIPBOARD = { permissions: ["clipboard-read", "clipboard-write"] };

/** axe-core finds nothing serious or critical, in the light and the dark scheme. */
async function assertAccessible(page, view) {
  for (const colorScheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme });
    assert.deepEqual(await axeViolations(page), [], `${view} (${colorScheme}): serious or critical accessibility violations`);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

const activeTestId = (page) => page.evaluate(() => document.activeElement?.getAttribute("data-testid") ?? document.activeElement?.id);
const chatItem = (page, id) => page.locator(`[data-testid="chat-item"][data-context-id="${id}"]`);
const openChat = (page, id) => chatItem(page, id).locator('[data-testid="chat-item-open"]').click();
const panelStatus = (page) => byTestId(page, "chat-panel").getAttribute("data-status");

/** The element is inside the visible part of the message list. */
const inView = (locator) =>
  locator.evaluate((el) => {
    const list = el.closest('[data-testid="message-list"]').getBoundingClientRect();
    const box = el.getBoundingClientRect();
    return box.top >= list.top - 1 && box.bottom <= list.bottom + 1;
  });

/** Stores messages straight into a chat through the deprecated CRUD route (no turn runs). */
async function storeMessages(server, id, count) {
  for (let i = 0; i < count; i++) {
    const role = i % 2 === 0 ? "user" : "assistant";
    const r = await fetch(`${server.baseUrl}/api/contexts/${id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ role, content: `${role} line ${i}: ${"a few words to make it wrap. ".repeat(3)}` }),
    });
    if (r.status !== 201) throw new Error(`storing a message answered ${r.status}`);
  }
}

test("offline sends wait and go out; drafts and errors stay with their chat; Escape acts where focus is", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport: WIDE });
  await openApp(page, server.baseUrl);
  const composer = byTestId(page, "composer-input");
  assert.equal(await activeTestId(page), "composer-input", "focus starts in the message box");
  await turn(page, "the first chat");
  const first = currentContextId(page);

  // Offline: the send is queued, says it will go out, and is no error.
  await context.setOffline(true);
  await send(page, "sent while offline");
  const waiting = messages(page, "user").filter({ hasText: "sent while offline" });
  await byTestId(waiting, "message-queued").waitFor();
  assert.equal(await waiting.getAttribute("data-waiting"), "true");
  assert.match(await byTestId(waiting, "message-queued").innerText(), /goes out by itself/);
  assert.equal(await byTestId(page, "message-failed").count(), 0, "not shown as failed");
  assert.equal(await byTestId(page, "error-banner").count(), 0, "no error banner");
  assert.match(await byTestId(page, "offline-notice").innerText(), /^1 message is waiting to send\. It goes out by itself/);
  await assertAccessible(page, "a send waiting offline");
  await screenshot(page, "-offline");
  // Back online it goes out by itself, once, and the notice leaves.
  await context.setOffline(false);
  await waitForReply(page, "sent while offline");
  await byTestId(page, "offline-notice").waitFor({ state: "detached" });
  assert.equal(await byTestId(page, "message-queued").count(), 0);
  assert.equal(await byTestId(page, "error-banner").count(), 0);
  assert.equal(await messages(page, "user").filter({ hasText: "sent while offline" }).count(), 1);
  await waitForStatus(page, "idle");

  // Drafts are per chat, and survive a reload.
  await composer.fill("draft for the first chat");
  await byTestId(page, "new-chat").click();
  assert.equal(await composer.inputValue(), "", "the new chat has its own, empty, draft");
  await composer.fill("draft for a new chat");
  await openChat(page, first);
  assert.equal(await composer.inputValue(), "draft for the first chat");
  await page.reload();
  await byTestId(page, "chat-panel").waitFor();
  await waitForReply(page, "sent while offline");
  assert.equal(await composer.inputValue(), "draft for the first chat", "kept across a reload");
  await byTestId(page, "new-chat").click();
  assert.equal(await composer.inputValue(), "draft for a new chat");

  // An error belongs to its chat: a new chat that could not be created keeps its error there.
  await page.route("**/api/contexts", (route) =>
    route.request().method() === "POST"
      ? route.fulfill({ status: 503, contentType: "application/json", body: '{"error":{"code":"store_unavailable","message":"database down"}}' })
      : route.continue(),
  );
  await composer.press("Enter");
  await byTestId(page, "error-banner").filter({ hasText: "database down" }).waitFor();
  assert.equal(await composer.inputValue(), "draft for a new chat");
  await openChat(page, first);
  assert.equal(await byTestId(page, "error-banner").count(), 0, "the other chat shows no error of the new one");
  assert.equal(await composer.inputValue(), "draft for the first chat");
  await byTestId(page, "new-chat").click();
  await byTestId(page, "error-banner").filter({ hasText: "database down" }).waitFor();
  await page.unroute("**/api/contexts");
  await openChat(page, first);

  // Escape acts where focus is: in the search box it clears the search, not the reply.
  await send(page, "/slow 80");
  await page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]').waitFor();
  const search = byTestId(page, "chat-search");
  await search.fill("zebra");
  await search.press("Escape");
  assert.equal(await search.inputValue(), "", "Escape cleared the search");
  assert.equal(await panelStatus(page), "running", "and did not stop the reply");
  await search.press("Escape");
  assert.equal(await activeTestId(page), "composer-input", "a second Escape leaves the search for the message box");
  // In the chat list Escape is not the chat's: the reply runs on.
  await chatItem(page, first).locator('[data-testid="chat-item-open"]').focus();
  await page.keyboard.press("Escape");
  assert.equal(await panelStatus(page), "running", "Escape in the chat list did not stop the reply");
  await composer.focus();
  await page.keyboard.press("Escape");
  await page.locator('[data-testid="message"][data-role="assistant"][data-status="cancelled"]').waitFor();
  await waitForStatus(page, "idle");
  assertLocalOnly();
});

test("long chats: older messages page in, cards come into view with focus, one action row per turn", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport: WIDE, ...CLIPBOARD });
  const id = await createChat(server, "A long chat");
  await storeMessages(server, id, 60);
  await openApp(page, server.baseUrl, id);
  await byTestId(page, "show-earlier").waitFor();
  assert.equal(await messages(page).count(), 50, "the latest 50 messages render");
  await byTestId(page, "show-earlier").click();
  await page.locator('[data-testid="message"]').nth(59).waitFor();
  assert.equal(await byTestId(page, "show-earlier").count(), 0);

  // Scrolled up, "jump to latest" brings the end back.
  await byTestId(page, "message-list").evaluate((el) => (el.scrollTop = 0));
  await byTestId(page, "jump-to-latest").click();
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="message-list"]');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 2;
  });

  // A tool request: the card is in view, has focus, is announced, and one action approves.
  await send(page, '/tool calculator {"expression":"2+3"}');
  const card = byTestId(page, "tool-approval");
  await card.waitFor();
  await page.waitForFunction(() => document.activeElement?.getAttribute("data-testid") === "tool-approval");
  assert.ok(await inView(card), "the approval card is scrolled into view");
  assert.match(await byTestId(page, "announcer").innerText(), /asks to use calculator\. Approve or deny/);
  await assertAccessible(page, "tool approval");
  await screenshot(page, "-approval");
  await page.keyboard.press("Tab");
  assert.equal(await activeTestId(page), "tool-approve");
  await page.keyboard.press("Enter");
  await card.waitFor({ state: "detached" });
  await waitForStatus(page, "idle");
  assert.match(await messages(page, "assistant").last().innerText(), /\b5\b/);

  // One action row per turn: the reply that called the tool has none; the last has one,
  // which copies the whole turn.
  const calling = messages(page, "assistant").filter({ has: page.locator('[data-testid="tool-call-line"]') }).last();
  assert.equal(await byTestId(calling, "message-copy").count(), 0);
  const last = messages(page, "assistant").last();
  await byTestId(last, "message-copy").click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(copied, /I will use the calculator tool\./);
  assert.match(copied, /\b5\b/);
  // Each row is one Tab stop; the arrow keys move along it.
  const stops = await page.$$eval('[role="toolbar"]', (bars) => bars.map((b) => [...b.querySelectorAll("button")].filter((x) => x.tabIndex === 0).length));
  assert.ok(stops.length > 0 && stops.every((n) => n === 1), `one Tab stop per action row: ${stops}`);
  await byTestId(last, "message-copy").focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await activeTestId(page), "message-regenerate");

  // A denied call shows its badge, and no "Tool result" repeating the denial.
  await send(page, "/tool current_time {}");
  await card.waitFor();
  await byTestId(card, "tool-deny").click();
  await card.waitFor({ state: "detached" });
  await waitForStatus(page, "idle");
  await page.locator('[data-testid="tool-call-line"][data-tool-status="denied"]').waitFor();
  assert.equal(await messages(page, "tool").count(), 0, "no tool message repeats a result or a denial");
  await assertAccessible(page, "a denied call");

  // A failed turn at the end of the long chat is in view.
  await send(page, "/fail fatal");
  const failure = byTestId(page, "chat-failed");
  await failure.waitFor();
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="chat-failed"]');
    const list = el.closest('[data-testid="message-list"]').getBoundingClientRect();
    return el.getBoundingClientRect().bottom <= list.bottom + 1;
  });
  assert.ok(await inView(failure));
  await screenshot(page, "-failed");
  assertLocalOnly();
});

test("screen readers and the keyboard: who said what, rendered text announced once, skip link, shortcuts, order of use, undo", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport: WIDE });
  const older = await createChat(server, "Older chat");
  const newer = await createChat(server, "Newer chat");
  await openApp(page, server.baseUrl);
  // With no chat used yet, the app opens the one with the latest activity.
  await page.waitForFunction((id) => decodeURIComponent(location.hash.slice(1)) === id, newer);

  await byTestId(page, "new-chat").click();
  await send(page, "/markdown");
  await waitForStatus(page, "idle");
  const markdownChat = currentContextId(page);
  const reply = messages(page, "assistant").last();
  await reply.waitFor();
  assert.deepEqual(await byTestId(page, "message-author").allInnerTexts(), ["You:", "Assistant:"]);
  // The live region reads the rendered reply, not its markdown source.
  const announcer = byTestId(page, "announcer");
  await page.waitForFunction(() => document.querySelector('[data-testid="announcer"]').textContent.startsWith("Assistant:"));
  const said = await announcer.innerText();
  assert.match(said, /bold/);
  assert.doesNotMatch(said, /\*\*|\||```|<|Copy/, `no markdown or button text: ${said}`);
  assert.equal(await page.title(), "/markdown · chatsync", "the page title names the chat");

  // Opening a chat does not announce its last reply; focus starts in the message box.
  await page.reload();
  await reply.waitFor();
  await page.locator('[data-testid="sync-status"][data-phase="synced"]').waitFor();
  await page.waitForTimeout(POLL_MS);
  assert.equal(await announcer.innerText(), "");
  assert.equal(await activeTestId(page), "composer-input");
  // The composer shows a plain focus ring.
  const ring = await page.locator(".composer").evaluate((el) => getComputedStyle(el).outlineStyle + " " + getComputedStyle(el).outlineWidth);
  assert.equal(ring, "solid 2px");

  // The skip link comes first in the page, and moves focus to the message box.
  await page.locator(".brand").click();
  await page.keyboard.press("Shift+Tab");
  assert.equal(await activeTestId(page), "skip-link");
  assert.ok((await byTestId(page, "skip-link").boundingBox()).y >= 0, "visible when focused");
  await page.keyboard.press("Enter");
  assert.equal(await activeTestId(page), "composer-input");
  assert.equal(currentContextId(page), markdownChat, "the link leaves the open chat alone");

  // `?` outside a field shows the shortcuts; Escape closes them.
  await page.evaluate(() => document.activeElement.blur());
  await page.keyboard.press("?");
  const sheet = byTestId(page, "shortcut-sheet");
  await sheet.waitFor();
  assert.match(await sheet.innerText(), /Shift\+Escape/);
  await assertAccessible(page, "shortcut sheet");
  await screenshot(page, "-shortcuts");
  await page.keyboard.press("Escape");
  await sheet.waitFor({ state: "detached" });
  await byTestId(page, "composer-input").focus();
  await page.keyboard.type("?");
  assert.equal(await sheet.count(), 0, "typing ? in the message box types it");
  await byTestId(page, "composer-input").fill("");

  // The list follows activity: a turn in the older chat moves it to the top.
  const r = await fetch(`${server.baseUrl}/api/contexts/${older}/actions/send_message`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ content: "wake up" }),
  });
  assert.equal(r.status, 200);
  // A reload re-reads the list, and opens the chat used last (not the newest).
  await page.goto(`${server.baseUrl}/`);
  await page.waitForFunction((id) => decodeURIComponent(location.hash.slice(1)) === id, markdownChat);
  const order = () => page.locator('[data-testid="chat-item"]').evaluateAll((items) => items.map((i) => i.dataset.contextId));
  await page.waitForFunction((id) => document.querySelector('[data-testid="chat-item"]')?.dataset.contextId === id, older);
  assert.deepEqual(await order(), [older, markdownChat, newer]);

  // Delete: focus goes to the chat that took its place; Undo brings it back.
  await chatItem(page, markdownChat).locator('[data-testid="chat-item-delete"]').click();
  await byTestId(page, "confirm-ok").click();
  await chatItem(page, markdownChat).waitFor({ state: "detached" });
  await page.waitForFunction((id) => document.activeElement?.closest('[data-testid="chat-item"]')?.dataset.contextId === id, newer);
  const toast = byTestId(page, "undo-toast");
  assert.match(await toast.innerText(), /Deleted “\/markdown”/);
  await assertAccessible(page, "undo toast");
  await screenshot(page, "-undo");
  await byTestId(toast, "undo-delete").click();
  await chatItem(page, markdownChat).waitFor();
  assert.equal(currentContextId(page), markdownChat, "the undone chat opens again");
  // Deleting it for good: the toast's close carries it out at once.
  await chatItem(page, markdownChat).locator('[data-testid="chat-item-delete"]').click();
  await byTestId(page, "confirm-ok").click();
  const deleted = page.waitForResponse((res) => res.request().method() === "DELETE" && res.url().endsWith(markdownChat));
  await byTestId(toast, "undo-dismiss").click();
  assert.equal((await deleted).status(), 204);
  await page.reload();
  await byTestId(page, "chat-panel").waitFor();
  await chatItem(page, older).waitFor();
  assert.equal(await chatItem(page, markdownChat).count(), 0);
  assertLocalOnly();
});

test("phone (390 px, touch): 44 px targets, a drawer with a close button, New chat in the header, Enter adds a line", TEST, async (t) => {
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {}, { viewport: PHONE, hasTouch: true, isMobile: true });
  await openApp(page, server.baseUrl);
  const composer = byTestId(page, "composer-input");
  await composer.fill("line one");
  await composer.press("Enter");
  await composer.pressSequentially("line two");
  assert.equal(await composer.inputValue(), "line one\nline two", "Enter adds a line on a touch screen");
  assert.equal(await messages(page).count(), 0);
  await byTestId(page, "send-button").click();
  await waitForReply(page, "line one");
  await waitForStatus(page, "idle");
  const first = currentContextId(page);

  const small = () =>
    page.evaluate(() =>
      [...document.querySelectorAll("button, select, summary, a[href], input, textarea")]
        .filter((el) => el.getClientRects().length > 0 && !el.closest(".markdown, [inert]") && getComputedStyle(el).visibility !== "hidden")
        .map((el) => ({ el, box: el.getBoundingClientRect() }))
        .filter(({ box }) => box.width > 0 && (box.width < 44 || box.height < 44))
        .map(({ el, box }) => `${el.dataset.testid ?? el.textContent.trim()} ${Math.round(box.width)}x${Math.round(box.height)}`),
    );
  assert.deepEqual(await small(), [], "every control and field is at least 44 px on a side");
  // The header leaves the title room: "Synced" is its dot (the word is still read out).
  assert.ok((await page.locator("h1").boundingBox()).width >= 120, "the title has room in the header");
  assert.equal(await byTestId(page, "sync-status").innerText(), "Synced");
  assert.equal(await byTestId(page, "sync-status").locator(".sync-label").evaluate((el) => el.getBoundingClientRect().width), 1);

  // While a tool call waits, the message box says why, whole, even when that takes two lines.
  await byTestId(page, "composer-input").fill('/tool calculator {"expression":"2+3"}');
  await byTestId(page, "send-button").click();
  await byTestId(page, "tool-approval").waitFor();
  const clipped = await composer.evaluate((el) => {
    // A copy as wide, out of the layout, holding the placeholder as its text.
    const copy = el.cloneNode();
    Object.assign(copy.style, { position: "absolute", width: `${el.getBoundingClientRect().width}px`, height: "auto" });
    copy.value = el.placeholder;
    el.after(copy);
    const needed = copy.scrollHeight;
    copy.remove();
    return needed > el.clientHeight + 1 ? `${needed} > ${el.clientHeight}` : null;
  });
  assert.equal(clipped, null, "the placeholder shows whole");
  await screenshot(page, "-approval");
  await byTestId(page, "tool-approve").click();
  await waitForStatus(page, "idle");
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth), false, "nothing scrolls sideways");
  await assertAccessible(page, "phone chat");
  await screenshot(page, "-chat");

  await byTestId(page, "header-new-chat").click();
  await byTestId(page, "empty-chat").waitFor();
  assert.equal(currentContextId(page), null);

  await byTestId(page, "drawer-open").click();
  const drawer = page.locator('[data-testid="sidebar"][role="dialog"]');
  await drawer.waitFor();
  // Escape while renaming ends the rename only.
  await chatItem(page, first).locator('[data-testid="chat-item-rename"]').click();
  await byTestId(page, "chat-item-rename-input").press("Escape");
  await byTestId(page, "chat-item-rename-input").waitFor({ state: "detached" });
  assert.equal(await drawer.count(), 1, "the drawer stays open");
  await chatItem(page, first).locator('[data-testid="chat-item-rename"]').click();
  assert.deepEqual(await small(), [], "the search and rename fields are 44 px too");
  await byTestId(page, "chat-item-rename-input").press("Escape");
  await assertAccessible(page, "phone drawer");
  await screenshot(page, "-drawer");
  await byTestId(page, "drawer-close").click();
  await drawer.waitFor({ state: "detached" });
  assert.equal(await activeTestId(page), "drawer-open", "focus returns to the button that opened it");
  assertLocalOnly();
});

test("replies and tools: code labels, images as links, inline caret, examples, search matches, export, theme, model picker", TEST, async (t) => {
  const { server, context, page, screenshot, assertLocalOnly } = await setup(
    t,
    browser,
    // The server's GET /api/models offers this list, with its own model as the default.
    { args: ["--allowed-models", "scripted,beta"] },
    { viewport: WIDE, acceptDownloads: true },
  );
  const elsewhere = [];
  context.on("request", (r) => r.url().includes("elsewhere.invalid") && elsewhere.push(r.url()));
  await openApp(page, server.baseUrl);

  // The empty chat offers examples that fill the message box.
  await byTestId(page, "example").filter({ hasText: "/markdown" }).click();
  const composer = byTestId(page, "composer-input");
  assert.equal(await composer.inputValue(), "/markdown");
  assert.equal(await activeTestId(page), "composer-input");
  const picker = byTestId(page, "model-select");
  assert.equal(await picker.inputValue(), "scripted");
  await picker.selectOption("beta");
  await composer.press("Enter");
  await waitForStatus(page, "idle");
  const id = currentContextId(page);
  const summary = await (await fetch(`${server.baseUrl}/api/contexts/${id}`)).json();
  assert.equal(summary.config.model_id, "beta", "the chat was created with the picked model");
  await byTestId(page, "model-in-use").filter({ hasText: "beta" }).waitFor();
  assert.equal(await picker.count(), 0, "the model is chosen when a chat starts");
  // On a phone the model goes under the title, which keeps its room.
  await page.setViewportSize(PHONE);
  const [head, model] = [await page.locator("h1").boundingBox(), await byTestId(page, "model-in-use").boundingBox()];
  assert.ok(head.width >= 120 && model.y >= head.y + head.height - 1, `the title has room, the model under it: ${JSON.stringify({ head, model })}`);
  await page.setViewportSize(WIDE);

  // Code blocks name their language; no syntax tree node leaks into the markup.
  assert.equal(await byTestId(page, "code-lang").first().innerText(), "js");
  assert.doesNotMatch(await page.content(), /node="\[object Object\]"/);

  // An image from another origin is a link, never loaded.
  await send(page, "![x](https://elsewhere.invalid/?d=secret)");
  const link = page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"] [data-testid="image-link"]');
  await link.waitFor();
  await waitForStatus(page, "idle");
  assert.equal(await link.getAttribute("href"), "https://elsewhere.invalid/?d=secret");
  assert.equal(await messages(page, "assistant").last().locator("img").count(), 0);
  assert.deepEqual(elsewhere, [], "nothing was requested from the other origin");

  // The streaming caret sits at the end of the text, inside its last block.
  await send(page, "/slow 40");
  const streaming = page.locator('[data-testid="message"][data-role="assistant"][data-status="streaming"]');
  await streaming.locator(".markdown p").first().waitFor();
  const caret = await streaming.evaluate((el) => {
    const blocks = el.querySelectorAll(".markdown > *");
    return getComputedStyle(blocks[blocks.length - 1], "::after").display;
  });
  assert.equal(caret, "inline-block");
  await waitForStatus(page, "idle");

  // Search results say where they matched.
  const search = byTestId(page, "chat-search");
  await search.fill("markdown");
  await page.locator('[data-testid="chat-item"] mark').filter({ hasText: "markdown" }).waitFor();
  // The open chat's messages are here: its result shows the words around the match.
  await search.fill("chunk");
  const match = byTestId(chatItem(page, id), "chat-item-match");
  await match.locator("mark").first().waitFor();
  assert.match(await match.innerText(), /chunk 1 chunk 2/);
  await search.fill("");

  // Export: Markdown and JSON, downloaded from the page.
  for (const [button, check] of [
    ["export-markdown", (text) => assert.match(text, /^# \/markdown\n[\s\S]*## You[\s\S]*## Assistant[\s\S]*const answer = 40 \+ 2;/)],
    ["export-json", (text) => assert.equal(JSON.parse(text).messages.filter((m) => m.role === "user").length, 3)],
  ]) {
    await byTestId(page, "export-menu").click();
    const [download] = await Promise.all([page.waitForEvent("download"), byTestId(page, button).click()]);
    check(await readFile(await download.path(), "utf8"));
  }

  // Theme: dark, kept across a reload, then back to the system's.
  await byTestId(page, "theme-select").selectOption("dark");
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  await page.reload();
  await byTestId(page, "chat-panel").waitFor();
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor), "rgb(22, 24, 29)");
  assert.equal(await byTestId(page, "theme-select").inputValue(), "dark");
  await assertAccessible(page, "dark theme");
  await screenshot(page, "-dark");
  await byTestId(page, "theme-select").selectOption("system");
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor), "rgb(255, 255, 255)");
  assertLocalOnly();
});
