// Loaded by the test page: imports the built package the way an application does and
// exposes small helpers to the test bodies that run in the page.
import init, { ChatSync } from "/pkg/sync_wasm.js";

await init();

window.ChatSync = ChatSync;

/** Resolves with the first view that satisfies `predicate`; rejects at the deadline. */
window.waitForView = (sync, predicate, what = "a matching view", timeoutMs = 10000) =>
  new Promise((resolve, reject) => {
    let off = null;
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      off?.();
      reject(new Error(`timed out waiting for ${what}; last view: ${JSON.stringify(sync.getView())}`));
    }, timeoutMs);
    off = sync.subscribe((view) => {
      if (done || !predicate(view)) return;
      done = true;
      clearTimeout(timer);
      // The first call happens inside subscribe(), before `off` is assigned.
      queueMicrotask(() => off());
      resolve(view);
    });
  });

/** A ChatSync on a fresh context, started and synced. */
window.newChat = async (options = {}) => {
  const sync = new ChatSync({ baseUrl: "/api", ...options });
  const context = await sync.createContext({ title: "sync-wasm test" });
  sync.setContext(context.id);
  sync.start();
  await waitForView(sync, (v) => v.sync === "synced", "the first sync");
  return sync;
};

/** Whether a message is a finished assistant reply containing `text`. */
window.isReply = (m, text) =>
  m.role === "assistant" && m.status === "complete" && m.text.includes(text);

/** Makes the tab look hidden or visible, as the browser does when switching tabs. */
window.setHidden = (hidden) => {
  Object.defineProperty(document, "visibilityState", {
    configurable: true,
    get: () => (hidden ? "hidden" : "visible"),
  });
  document.dispatchEvent(new Event("visibilitychange"));
};

window.harnessReady = true;
