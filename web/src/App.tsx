import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useChatStateSync } from "@chatsync/sync-wasm/react";
import { LOCAL_USER, readToken, isAuthError } from "./hooks/useAuth";
import { useContexts } from "./hooks/useContexts";
import { APP, describeError, useErrorReport } from "./hooks/useErrorReport";
import { dropDraft, moveDraft, readDraft } from "./hooks/useDraft";
import { readJsonPref, writePref } from "./prefs";
import { useMediaQuery } from "./hooks/useMediaQuery";
import { useShortcuts } from "./hooks/useShortcuts";
import { chatInUrl, useSelectedContext } from "./hooks/useSelectedContext";
import { Sidebar, chatTitle, snippetOf } from "./components/Sidebar";
import { ChatPanel } from "./components/ChatPanel";
import { ShortcutSheet } from "./components/ShortcutSheet";
import { UndoToast } from "./components/UndoToast";
import { useUndoableDelete } from "./hooks/useUndoableDelete";
import { useTheme } from "./hooks/useTheme";
import { useModels } from "./hooks/useModels";

const focusComposer = () => document.getElementById("composer-input")?.focus();

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

type LastChat = { user: string; id: string };
const isLastChat = (v: unknown): v is LastChat =>
  typeof v === "object" && v !== null && typeof (v as LastChat).user === "string" && typeof (v as LastChat).id === "string";
/** The chat this user had open last in this browser; the app opens it again. */
const readLastChat = (user: string) => {
  const last = readJsonPref<LastChat | null>("last-chat", null, (v): v is LastChat | null => v === null || isLastChat(v));
  return last?.user === user ? last.id : null;
};
const writeLastChat = (user: string, id: string) => writePref("last-chat", JSON.stringify({ user, id }));

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
  // Drafts are the user's own: another user signing in on this browser does not see them.
  const draftUser = userId ?? "";
  // With no chat in the URL, the chat used last opens at once, before the list has loaded,
  // so what is typed meanwhile is that chat's draft.
  const [selectedId, select] = useSelectedContext(() => readLastChat(draftUser));
  const errors = useErrorReport(selectedId);
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
  // The list follows the open chat's turns, and drops a chat another tab deleted. A new
  // version while the chat rests (no reply streaming) is a change the list may show: the
  // title the model gave after the first turn, a rename elsewhere.
  const showAppError = useCallback((message: string) => errors.show(message, APP), [errors.show]);
  const restingVersion = view.status === "running" ? "" : view.version;
  const chats = useContexts(
    sync,
    `${view.contextId}:${view.status}:${restingVersion}:${view.sync === "deleted"}:${resumed}`,
    searched,
    showAppError,
  );
  const narrow = useMediaQuery("(max-width: 640px)");
  const [theme, setTheme] = useTheme();
  const models = useModels();
  const [model, setModel] = useState<string | null>(null);
  const [drawerOpen, setDrawerOpen] = useState(false);
  const closeDrawer = useCallback(() => setDrawerOpen(false), []);
  // A search may leave the open chat out of the list; its title is still the last one seen.
  const lastTitle = useRef<{ id: string; title: string } | null>(null);
  const openChat = chats.contexts.find((c) => c.id === selectedId);
  if (openChat) lastTitle.current = { id: openChat.id, title: chatTitle(openChat) };
  const title = lastTitle.current?.id === selectedId ? lastTitle.current.title : null;

  // Opening the app with nothing in the URL shows the chat used last (opened at mount),
  // else, once the list has loaded, the one with the latest activity; after that "no chat
  // selected" means a new, not yet created chat. The list may come after the user began
  // typing: someone typing in the new chat stays there, and a chat used last that is gone
  // gives what was typed in it to the chat opened instead.
  const autoOpened = useRef(chatInUrl());
  // Read once (a lazy initial state): the drafts are parsed from storage, not on every render.
  const [draftAtStart] = useState(() => readDraft(draftUser, selectedId));
  useEffect(() => {
    if (autoOpened.current || !chats.loaded || searched !== "") return;
    autoOpened.current = true;
    if (selectedId !== null && chats.contexts.some((c) => c.id === selectedId)) return;
    const typed = readDraft(draftUser, selectedId) !== draftAtStart;
    if (typed && selectedId === null) return;
    const reopen = chats.contexts[0]?.id ?? null;
    if (typed) moveDraft(draftUser, selectedId, reopen);
    select(reopen);
  }, [chats.loaded, chats.contexts, draftUser, draftAtStart, select, searched, selectedId]);
  useEffect(() => {
    if (selectedId !== null) writeLastChat(draftUser, selectedId);
  }, [draftUser, selectedId]);

  // The page's title names the open chat (tabs, history, a screen reader's window list).
  const pageTitle = view.sync === "deleted" ? "Deleted chat" : (title ?? "New chat");
  useEffect(() => {
    document.title = `${pageTitle} · chatsync`;
  }, [pageTitle]);

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
    focusComposer();
  }, [open]);

  // A delete leaves the list at once and is carried out after a few seconds, unless undone.
  const deletion = useUndoableDelete(
    useCallback(
      (id: string) =>
        errors.run(
          "Could not delete the chat",
          async () => {
            await chats.remove(id);
            dropDraft(draftUser, id);
          },
          APP,
        ),
      [errors, chats, draftUser],
    ),
  );
  const doomedId = deletion.pending?.id ?? null;
  const listed = useMemo(
    () => (doomedId === null ? chats : { ...chats, contexts: chats.contexts.filter((c) => c.id !== doomedId) }),
    [chats, doomedId],
  );
  const undoneSelection = useRef<string | null>(null);
  const deleteChat = useCallback(
    async (id: string) => {
      const chat = chats.contexts.find((c) => c.id === id);
      deletion.schedule({ id, title: chat ? chatTitle(chat) : "Chat" });
      undoneSelection.current = id === selectedId ? id : null;
      if (id === selectedId) select(chats.contexts.find((c) => c.id !== id)?.id ?? null);
    },
    [chats, deletion, selectedId, select],
  );
  const undoDelete = useCallback(() => {
    deletion.undo();
    if (undoneSelection.current) select(undoneSelection.current);
  }, [deletion, select]);

  const rename = useCallback(
    (id: string, title: string) => errors.run("Could not rename the chat", () => chats.rename(id, title), APP),
    [errors, chats],
  );

  // What a send needs once the client exists; `whenReady` resolves at that point.
  // Read through a ref: the composer may hold a send made in an earlier render.
  const latest = useRef({ sync, actions, chats, setContextId });
  latest.current = { sync, actions, chats, setContextId };
  const readyWaiters = useRef<(() => void)[]>([]);
  useEffect(() => {
    if (sync) for (const resolve of readyWaiters.current.splice(0)) resolve();
  }, [sync]);
  const whenReady = useCallback(
    () =>
      latest.current.sync ? Promise.resolve() : new Promise<void>((resolve) => readyWaiters.current.push(resolve)),
    [],
  );

  // A new chat exists on the server only from its first message on, so no empty chats
  // pile up; that message then runs through the FSM like any other. If the chat cannot be
  // created, the message was never shown, so the composer gets its text back.
  const send = useCallback(
    async (text: string) => {
      // Typed before the client exists (just after the app mounts, or a sign-in): wait
      // for it rather than lose the message; then act through this render's successors.
      await whenReady();
      const { actions, chats, setContextId } = latest.current;
      if (!selectedId) {
        try {
          const modelId = models ? (model ?? models.default) : null;
          const created = await chats.create({ title: titleFrom(text), ...(modelId ? { modelId } : {}) });
          autoOpened.current = true;
          select(created.id);
          setContextId(created.id);
        } catch (e) {
          // A refused token brings the sign-in up; the text stays in the box meanwhile.
          if (!isAuthError(e)) errors.show(`Could not create the chat: ${describeError(e)}. Your message is still in the box.`);
          return false;
        }
      }
      // From here on the message is in the list. A send kept for later (offline, or lost on
      // the network) shows there as waiting to send; one the server refused shows there as
      // not sent, with Retry. Only a send that was never shown (the queue is full) gives the
      // composer its text back, with the reason.
      try {
        await actions.sendMessage(text);
        return true;
      } catch (e) {
        const kind = typeof e === "object" && e !== null && "kind" in e ? e.kind : null;
        if (kind !== "invalid") return true;
        errors.show(`Could not send the message: ${describeError(e)}. Your message is still in the box.`);
        return false;
      }
    },
    [errors, selectedId, select, whenReady, models, model],
  );

  // A search result for the open chat can show where it matched: its messages are here.
  const matchIn = useCallback(
    (id: string) =>
      id === view.contextId ? snippetOf(view.messages.filter((m) => m.role !== "system").map((m) => m.text), searched) : null,
    [view.contextId, view.messages, searched],
  );

  const running = view.status === "running";
  const [helpOpen, setHelpOpen] = useState(false);
  useShortcuts(
    inert || helpOpen
      ? null
      : {
          newChat,
          focusComposer,
          stop: running ? () => void errors.run("Could not stop the reply", actions.cancel) : null,
          showHelp: () => setHelpOpen(true),
        },
  );
  // Focus starts in the message box, once (an expired session's sign-in gives focus back to
  // where it was instead), and not on a touch screen, where it would pop the keyboard up.
  const startFocused = useRef(false);
  useEffect(() => {
    if (inert || startFocused.current) return;
    startFocused.current = true;
    const idle = document.activeElement === null || document.activeElement === document.body;
    if (idle && !window.matchMedia("(pointer: coarse)").matches) focusComposer();
  }, [inert]);

  return (
    <div className="app" inert={inert}>
      <a
        className="skip-link"
        href="#composer-input"
        data-testid="skip-link"
        onClick={(e) => {
          // The hash names the open chat; the link only moves focus.
          e.preventDefault();
          focusComposer();
        }}
      >
        Skip to the message box
      </a>
      {helpOpen && <ShortcutSheet onClose={() => setHelpOpen(false)} />}
      {deletion.pending && (
        <UndoToast title={deletion.pending.title} onUndo={undoDelete} onDismiss={deletion.flush} />
      )}
      <Sidebar
        chats={listed}
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
        theme={theme}
        onTheme={setTheme}
        matchIn={matchIn}
      />
      <ChatPanel
        view={view}
        chatId={selectedId}
        title={title}
        user={draftUser}
        actions={actions}
        onSend={send}
        error={errors.error}
        onDismissError={errors.dismiss}
        run={errors.run}
        onOpenDrawer={narrow ? () => setDrawerOpen(true) : null}
        onNewChat={narrow ? newChat : null}
        models={models}
        model={model ?? models?.default ?? null}
        onModel={setModel}
        modelInUse={openChat?.config.modelId ?? null}
      />
    </div>
  );
}
