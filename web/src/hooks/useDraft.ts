import { useCallback, useState } from "react";
import { readJsonPref, writePref } from "../prefs";

/**
 * What was typed into the composer and not sent, one draft per chat (and one for the new
 * chat), per user, kept across reloads. Bounded: the newest `MAX_DRAFTS` drafts, each kept
 * up to `MAX_DRAFT_CHARS` (a longer one is kept whole while the page lives).
 */
const MAX_DRAFTS = 20;
const MAX_DRAFT_CHARS = 50_000;

type Drafts = Record<string, { text: string; at: number }>;
const isDrafts = (v: unknown): v is Drafts =>
  typeof v === "object" && v !== null && Object.values(v).every((d) => typeof d?.text === "string" && typeof d?.at === "number");

const load = (key: string) => readJsonPref("drafts", {} as Drafts, isDrafts)[key]?.text ?? "";

function save(key: string, text: string) {
  const drafts = readJsonPref("drafts", {} as Drafts, isDrafts);
  delete drafts[key];
  if (text.trim() !== "") drafts[key] = { text: text.slice(0, MAX_DRAFT_CHARS), at: Date.now() };
  const kept = Object.entries(drafts)
    .sort(([, a], [, b]) => b.at - a.at)
    .slice(0, MAX_DRAFTS);
  writePref("drafts", kept.length ? JSON.stringify(Object.fromEntries(kept)) : null);
}

const draftKey = (user: string, chatId: string | null) => `${user}/${chatId ?? ""}`;

/** Forgets a chat's draft (the chat was deleted). */
export const dropDraft = (user: string, chatId: string) => save(draftKey(user, chatId), "");

/** The stored draft of `chatId` (null: the new chat). */
export const readDraft = (user: string, chatId: string | null) => load(draftKey(user, chatId));

/**
 * Moves the draft of `from` to `to` (the app, not the user, opened another chat), after
 * any draft `to` had: nothing typed is lost.
 */
export function moveDraft(user: string, from: string | null, to: string | null) {
  const moved = readDraft(user, from);
  if (from === to || moved.trim() === "") return;
  const kept = readDraft(user, to);
  save(draftKey(user, to), kept.trim() === "" ? moved : `${kept}\n\n${moved}`);
  save(draftKey(user, from), "");
}

type Update = string | ((now: string) => string);

/** The draft of `chatId` (null: the new chat) for `user`; the setter stays bound to that chat. */
export function useDraft(user: string, chatId: string | null): [string, (next: Update) => void] {
  const key = draftKey(user, chatId);
  const [state, setState] = useState(() => ({ key, text: load(key) }));
  // Another chat opened: its own draft shows (React's "state derived from props" pattern).
  if (state.key !== key) setState({ key, text: load(key) });
  const setText = useCallback(
    (next: Update) =>
      setState((s) => {
        const now = s.key === key ? s.text : load(key);
        const text = typeof next === "function" ? next(now) : next;
        save(key, text);
        // A late update for a chat no longer open lands in its stored draft only.
        return s.key === key ? { key, text } : s;
      }),
    [key],
  );
  return [state.key === key ? state.text : load(key), setText];
}
