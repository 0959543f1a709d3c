// Titles that follow the chat, with a model that names chats (`--model openai`, here a
// fake OpenAI-compatible server on 127.0.0.1): the model's title shows without a reload,
// and a rename the user makes while the model is still naming the chat wins and stays.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { byTestId, currentContextId, launchBrowser, openApp, send, setup, waitForStatus } from "./harness.mjs";

let browser;
before(async () => (browser = await launchBrowser()));
after(() => browser?.close());

/** The server's request for a title starts its system prompt with this. */
const TITLE_REQUEST = "Name this chat";

/**
 * A chat completions server that replies "Here is a plan." and names every chat
 * "Model's title"; each title answer waits until the test lets it go (`releaseTitle`).
 */
async function fakeModel(t) {
  let asked = 0;
  let onAsked = () => {};
  const releases = [];
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const { messages } = JSON.parse(body);
    const naming = messages.some((m) => m.role === "system" && String(m.content).startsWith(TITLE_REQUEST));
    if (naming) {
      let release;
      const released = new Promise((resolve) => (release = resolve));
      const sent = new Promise((resolve) => res.once("finish", resolve));
      releases.push({ release, sent });
      asked += 1;
      onAsked();
      await released;
    }
    const text = naming ? "Model's title" : "Here is a plan.";
    const event = (delta, finish) => `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(event({ role: "assistant", content: text }, null));
    res.write(event({}, "stop"));
    res.end("data: [DONE]\n\n");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    /** Resolves once the server has asked for `n` titles in all. */
    asked: (n) =>
      new Promise((resolve) => {
        onAsked = () => asked >= n && resolve();
        onAsked();
      }),
    /** Lets the oldest held title answer go; resolves once it has been sent whole. */
    releaseTitle: () => {
      const { release, sent } = releases.shift();
      release();
      return sent;
    },
  };
}

/** Waits until the open chat shows `n` finished replies. */
const replies = (page, n) =>
  page.locator('[data-testid="message"][data-role="assistant"][data-status="complete"]').nth(n - 1).waitFor();
const chatItem = (page, id) => page.locator(`[data-testid="chat-item"][data-context-id="${id}"]`);
const itemTitle = (page, id) => chatItem(page, id).locator(".chat-item-title");

test("the model's title shows; a rename made while it names the chat stays", { timeout: 120_000 }, async (t) => {
  const model = await fakeModel(t);
  const { server, page, screenshot, assertLocalOnly } = await setup(t, browser, {
    args: ["--model", "openai", "--openai-base-url", model.url, "--openai-model", "fake"],
  });
  await openApp(page, server.baseUrl);

  // The first turn rests, the model names the chat, and the list and header show it.
  await send(page, "Plan a trip to Rome");
  await replies(page, 1);
  await model.asked(1);
  const named = currentContextId(page);
  assert.equal(await itemTitle(page, named).innerText(), "Plan a trip to Rome", "the first words, meanwhile");
  await model.releaseTitle();
  await itemTitle(page, named).filter({ hasText: "Model's title" }).waitFor();
  await page.locator("h1", { hasText: "Model's title" }).waitFor();

  // More chats, each renamed by the user while the model is still naming it: to a name of
  // their own, and to the first words kept on purpose (Enter in the unchanged box).
  const renames = [
    ["Plan a trip to Florence", "Florence with the kids"],
    ["Plan a trip to Siena", null],
  ];
  const kept = [];
  for (const [first, name] of renames) {
    await byTestId(page, "new-chat").click();
    await send(page, first);
    await replies(page, 1);
    await model.asked(kept.length + 2);
    const id = currentContextId(page);
    const item = chatItem(page, id);
    await byTestId(item, "chat-item-rename").click();
    if (name !== null) await byTestId(item, "chat-item-rename-input").fill(name);
    await byTestId(item, "chat-item-rename-input").press("Enter");
    await itemTitle(page, id).filter({ hasText: name ?? first }).waitFor();
    await model.releaseTitle();
    // A turn after the model's answer was sent: its title, had it applied, came first.
    await send(page, "And then?");
    await replies(page, 2);
    await waitForStatus(page, "idle");
    kept.push([id, name ?? first]);
  }
  await page.reload();
  for (const [id, title] of kept) {
    await itemTitle(page, id).waitFor();
    assert.equal(await itemTitle(page, id).innerText(), title, "the user's name stayed");
    const r = await fetch(`${server.baseUrl}/api/contexts/${id}`);
    assert.equal((await r.json()).title, title, "on the server too");
  }
  assert.equal(await page.locator("h1").innerText(), kept.at(-1)[1]);
  await screenshot(page, "-renamed");
  assertLocalOnly();
});
