import { useCallback, useEffect, useRef } from "react";
import { useChatStateSync } from "@chatsync/sync-wasm/react";
import { useContexts } from "./hooks/useContexts";
import { useErrorReport } from "./hooks/useErrorReport";
import { useSelectedContext } from "./hooks/useSelectedContext";
import { Sidebar, chatTitle } from "./components/Sidebar";
import { ChatPanel } from "./components/ChatPanel";

const TITLE_LENGTH = 48;

/** A chat is named after its first message: the first line, cut at a word near the limit. */
export function titleFrom(text: string): string {
  const line = text.trim().split("\n")[0];
  if (line.length <= TITLE_LENGTH) return line;
  const cut = line.slice(0, TITLE_LENGTH);
  const space = cut.lastIndexOf(" ");
  return `${space > TITLE_LENGTH / 2 ? cut.slice(0, space) : cut}…`;
}

export function App() {
  const [selectedId, select] = useSelectedContext();
  const errors = useErrorReport();
  const { sync, view, actions } = useChatStateSync(selectedId);
  // The list follows the open chat's turns, and drops a chat another tab deleted.
  const chats = useContexts(sync, `${view.contextId}:${view.status}:${view.sync === "deleted"}`, errors.show);
  const selected = chats.contexts.find((c) => c.id === selectedId) ?? null;

  // Opening the app with nothing in the URL shows the most recent chat, once; after that
  // "no chat selected" means a new, not yet created chat.
  const autoOpened = useRef(selectedId !== null);
  const firstId = chats.contexts[0]?.id ?? null;
  useEffect(() => {
    if (autoOpened.current || !chats.loaded) return;
    autoOpened.current = true;
    if (firstId) select(firstId);
  }, [chats.loaded, firstId, select]);

  const newChat = useCallback(() => {
    autoOpened.current = true;
    select(null);
  }, [select]);

  const deleteChat = useCallback(
    (id: string) =>
      errors.run("Could not delete the chat", async () => {
        await chats.remove(id);
        if (id === selectedId) select(chats.contexts.find((c) => c.id !== id)?.id ?? null);
      }),
    [errors, chats, selectedId, select],
  );

  // A new chat exists on the server only from its first message on, so no empty chats
  // pile up; that message then runs through the FSM like any other.
  const send = useCallback(
    (text: string) =>
      errors.run("Could not send the message", async () => {
        if (!selectedId) {
          const created = await chats.create({ title: titleFrom(text) });
          select(created.id);
          sync.setContext(created.id);
        }
        await actions.sendMessage(text);
      }),
    [errors, selectedId, chats, select, sync, actions],
  );

  return (
    <div className="app">
      <Sidebar
        contexts={chats.contexts}
        selectedId={selectedId}
        onSelect={select}
        onNew={newChat}
        onDelete={deleteChat}
      />
      <ChatPanel
        view={view}
        title={selected ? chatTitle(selected) : null}
        actions={actions}
        onSend={send}
        error={errors.error}
        onDismissError={errors.dismiss}
        run={errors.run}
      />
    </div>
  );
}
