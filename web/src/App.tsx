import { useCallback, useEffect, useRef, useState } from "react";
import { useChatStateSync } from "@chatsync/sync-wasm/react";
import { LOCAL_USER, readToken, isAuthError } from "./hooks/useAuth";
import { useContexts } from "./hooks/useContexts";
import { describeError, useErrorReport } from "./hooks/useErrorReport";
import { useMediaQuery } from "./hooks/useMediaQuery";
import { useShortcuts } from "./hooks/useShortcuts";
import { useSelectedContext } from "./hooks/useSelectedContext";
import { Sidebar, chatTitle } from "./components/Sidebar";
import { ChatPanel } from "./components/ChatPanel";

const TITLE_LENGTH = 48;
const SEARCH_PAUSE_MS = 200;

/** A chat is named after its first message: the first line, cut at a word near the limit. */
export function titleFrom(text: string): string {
  const line = text.trim().split("\n")[0];
  if (line.length <= TITLE_LENGTH) return line;
  const cut = line.slice(0, TITLE_LENGTH);
  const space = cut.lastIndexOf(" ");
  return `${space > TITLE_LENGTH / 2 ? cut.slice(0, space) : cut}…`;
}

interface Props {
  /** Shown in the sidebar; null when there is no one worth naming. */
  user: string | null;
  /** Who the server takes the user for (null if it could not say): sends queued offline are theirs alone. */
  userId: string | null;
  onSignOut: (() => void) | null;
  /** A request was refused for its credentials. */
  onAuthError(): void;
  /** Changes when a new token was accepted after an expiry: syncing resumes. */
  resumed: number;
  /** The sign-in is open over the app. */
  inert: boolean;
}

export function App({ user, userId, onSignOut, onAuthError, resumed, inert }: Props) {
  const [selectedId, select] = useSelectedContext();
  const errors = useErrorReport();
  // The sync module reads its options once: the token is read before every request, and
  // its refusal goes to whatever handler the latest render gave.
  const authError = useRef(onAuthError);
  authError.current = onAuthError;
  const [options] = useState(() => ({
    baseUrl: "/api",
    getToken: readToken,
    onAuthError: () => authError.current(),
    // With `--auth none` there is one user: the queue keeps the key it always had, so
    // sends queued before an upgrade still go out.
    ...(userId === null || userId === LOCAL_USER ? {} : { userId }),
  }));
  // `sync` is null until the module is loaded and the client exists.
  const { sync, view, actions, setContextId } = useChatStateSync(selectedId, options);
  // A new token after an expiry: polling resumes, and the sends queued meanwhile go out.
  const resumedSeen = useRef(resumed);
  useEffect(() => {
    if (resumedSeen.current === resumed || !sync) return;
    resumedSeen.current = resumed;
    sync.start();
  }, [sync, resumed]);
  const [query, setQuery] = useState("");
  // The server searches once typing pauses, not on every key.
  const [searched, setSearched] = useState("");
  useEffect(() => {
    const timer = setTimeout(() => setSearched(query), SEARCH_PAUSE_MS);
    return () => clearTimeout(timer);
  }, [query]);
  // The list follows the open chat's turns, and drops a chat another tab deleted.
  const chats = useContexts(sync, `${view.contextId}:${view.status}:${view.sync === "deleted"}:${resumed}`, searched, errors.show);
  const narrow = useMediaQuery("(max-width: 640px)");
  const [drawerOpen, setDrawerOpen] = useState(false);
  const closeDrawer = useCallback(() => setDrawerOpen(false), []);
  // A search may leave the open chat out of the list; its title is still the last one seen.
  const lastTitle = useRef<{ id: string; title: string } | null>(null);
  const listed = chats.contexts.find((c) => c.id === selectedId);
  if (listed) lastTitle.current = { id: listed.id, title: chatTitle(listed) };
  const title = lastTitle.current?.id === selectedId ? lastTitle.current.title : null;

  // Opening the app with nothing in the URL shows the most recent chat, once; after that
  // "no chat selected" means a new, not yet created chat.
  const autoOpened = useRef(selectedId !== null);
  const firstId = chats.contexts[0]?.id ?? null;
  useEffect(() => {
    if (autoOpened.current || !chats.loaded) return;
    autoOpened.current = true;
    if (firstId) select(firstId);
  }, [chats.loaded, firstId, select]);

  const open = useCallback(
    (id: string | null) => {
      autoOpened.current = true;
      select(id);
      setDrawerOpen(false);
    },
    [select],
  );
  const newChat = useCallback(() => {
    open(null);
    document.getElementById("composer-input")?.focus();
  }, [open]);

  const deleteChat = useCallback(
    (id: string) =>
      errors.run("Could not delete the chat", async () => {
        await chats.remove(id);
        if (id === selectedId) select(chats.contexts.find((c) => c.id !== id)?.id ?? null);
      }),
    [errors, chats, selectedId, select],
  );

  const rename = useCallback(
    (id: string, title: string) => errors.run("Could not rename the chat", () => chats.rename(id, title)),
    [errors, chats],
  );

  // A new chat exists on the server only from its first message on, so no empty chats
  // pile up; that message then runs through the FSM like any other. If the chat cannot be
  // created, the message was never shown, so the composer gets its text back.
  const send = useCallback(
    async (text: string) => {
      if (!selectedId) {
        try {
          const created = await chats.create({ title: titleFrom(text) });
          select(created.id);
          setContextId(created.id);
        } catch (e) {
          // A refused token brings the sign-in up; the text stays in the box meanwhile.
          if (!isAuthError(e)) errors.show(`Could not create the chat: ${describeError(e)}. Your message is still in the box.`);
          return false;
        }
      }
      // From here on the message is in the list; a failed send is marked there, with Retry.
      await errors.run("Could not send the message", () => actions.sendMessage(text));
      return true;
    },
    [errors, selectedId, chats, select, setContextId, actions],
  );

  const running = view.status === "running";
  useShortcuts(
    inert
      ? null
      : {
          newChat,
          focusComposer: () => document.getElementById("composer-input")?.focus(),
          stop: running ? () => void errors.run("Could not stop the reply", actions.cancel) : null,
        },
  );

  return (
    <div className="app" inert={inert}>
      <Sidebar
        chats={chats}
        selectedId={selectedId}
        query={query}
        onQuery={setQuery}
        onSelect={open}
        onNew={newChat}
        onDelete={deleteChat}
        onRename={rename}
        drawer={narrow}
        // The drawer's focus trap gives way to the sign-in's.
        open={drawerOpen && !inert}
        onClose={closeDrawer}
        user={user}
        onSignOut={onSignOut}
      />
      <ChatPanel
        view={view}
        title={title}
        actions={actions}
        onSend={send}
        error={errors.error}
        onDismissError={errors.dismiss}
        run={errors.run}
        onOpenDrawer={narrow ? () => setDrawerOpen(true) : null}
      />
    </div>
  );
}
