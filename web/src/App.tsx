import { useCallback, useEffect } from "react";
import { useChatStateSync } from "./hooks/useChatStateSync";
import { useContexts } from "./hooks/useContexts";
import { useErrorReport } from "./hooks/useErrorReport";
import { useSelectedContext } from "./hooks/useSelectedContext";
import { Sidebar, chatTitle } from "./components/Sidebar";
import { ChatPanel } from "./components/ChatPanel";

export function App() {
  const [selectedId, select] = useSelectedContext();
  const errors = useErrorReport();
  const { sync, view, actions } = useChatStateSync(selectedId);
  const chats = useContexts(sync, `${view.contextId}:${view.status}`, errors.report);

  const selected = chats.contexts.find((c) => c.id === selectedId) ?? null;

  // With nothing in the URL, open the most recent chat once the list is known.
  const firstId = chats.contexts[0]?.id ?? null;
  useEffect(() => {
    if (!selectedId && chats.loaded && firstId) select(firstId);
  }, [selectedId, chats.loaded, firstId, select]);

  const newChat = useCallback(
    () =>
      errors.run(async () => {
        const created = await chats.create();
        select(created.id);
      }),
    [errors, chats, select],
  );

  const deleteChat = useCallback(
    (id: string) =>
      errors.run(async () => {
        await chats.remove(id);
        if (id === selectedId) select(chats.contexts.find((c) => c.id !== id)?.id ?? null);
      }),
    [errors, chats, selectedId, select],
  );

  // The first message of a chat that does not exist yet creates it, then sends through the FSM.
  const send = useCallback(
    (text: string) =>
      errors.run(async () => {
        if (!selectedId) {
          const created = await chats.create();
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
