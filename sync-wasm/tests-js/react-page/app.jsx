// A small React app on the hook, rendered under <StrictMode> (the development build, so
// effects really run, are cleaned up and run again on mount). Bundled by react.test.mjs.
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { useChatStateSync } from "../../pkg/react/react.js";

function Chat() {
  const { ready, sync, view, contextId, actions } = useChatStateSync(null);
  const [failure, setFailure] = useState(null);
  // Set during render only to be read by the test: did the view ever show a reply streaming?
  if (view.messages.some((m) => m.role === "assistant" && m.status === "streaming")) window.sawStreaming = true;
  const run = (f) => f().catch((e) => setFailure(`${e.name}: ${e.message}`));
  window.chat = {
    // A first message creates the chat; sendMessage right after createContext goes into it.
    send: (text) =>
      run(async () => {
        if (contextId === null) await actions.createContext({ title: "react test" });
        await actions.sendMessage(text);
      }),
    cancel: () => run(() => actions.cancel()),
  };
  // `sync` is null exactly while the hook is not ready.
  if ((sync === null) !== !ready) window.inconsistent = true;
  if (!ready) return <p data-testid="loading">Loading</p>;
  return (
    <section data-testid="chat" data-status={view.status ?? "none"} data-context={contextId ?? ""}>
      <h2>Chat</h2>
      <ol>
        {view.messages.map((m) => (
          <li key={m.clientMessageId ?? m.id} data-role={m.role} data-status={m.status}>
            {m.text}
          </li>
        ))}
      </ol>
      {failure && <p role="alert">{failure}</p>}
    </section>
  );
}

function App() {
  const [mounted, setMounted] = useState(true);
  return (
    <>
      <button onClick={() => setMounted((m) => !m)}>{mounted ? "Unmount" : "Mount"}</button>
      {mounted && <Chat />}
    </>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
