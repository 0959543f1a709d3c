import { useCallback, useEffect, useRef, useState } from "react";
import { ChatSync } from "@chatsync/sync-wasm";

/** The bearer token the user pasted; every request of the app and the sync module sends it. */
const TOKEN_KEY = "chatsync-token";

/** Who everyone is with `--auth none`. */
export const LOCAL_USER = "local";

export function readToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

function storeToken(token: string | null) {
  try {
    if (token === null) localStorage.removeItem(TOKEN_KEY);
    else localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Without storage the token lasts as long as the page's state.
  }
}

/** `Authorization: Bearer` for the app's own requests; none without a token. */
export const authHeaders = (token = readToken()): Record<string, string> =>
  token ? { Authorization: `Bearer ${token}` } : {};

/** Sync errors (and the app's own) whose cause is the credentials, not the request. */
export const isAuthError = (e: unknown) =>
  typeof e === "object" && e !== null && "kind" in e && e.kind === "auth";

type Me = { kind: "user"; userId: string } | { kind: "refused"; message: string } | { kind: "unknown" };

/**
 * `GET /api/me` with `token` (or none): who the server takes the caller for. A server that
 * cannot be reached, or has no such route, is "unknown": the app then runs as before, and a
 * 401 from any later request still brings the sign-in up.
 */
async function whoAmI(token: string): Promise<Me> {
  try {
    const r = await fetch("/api/me", { headers: authHeaders(token) });
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => null);
      return { kind: "refused", message: body?.error?.message ?? `HTTP ${r.status}` };
    }
    if (!r.ok) return { kind: "unknown" };
    const body = await r.json();
    return typeof body?.user_id === "string" ? { kind: "user", userId: body.user_id } : { kind: "unknown" };
  } catch {
    return { kind: "unknown" };
  }
}

/** The next person to sign in starts from their chat list, not from the last user's open chat. */
const leaveChat = () => window.history.replaceState(null, "", window.location.pathname + window.location.search);

interface State {
  phase: "checking" | "signed-in" | "signed-out";
  userId: string | null;
  /** The sign-in shows because a token stopped working (or a stored one was refused). */
  expired: boolean;
  /** The app stays mounted under the sign-in: an expiry keeps what was typed and queued. */
  keepApp: boolean;
  /** Counts tokens accepted after an expiry; the app resumes syncing on each. */
  resumed: number;
  /** Changes when another user signs in over an expired session: the app starts afresh. */
  generation: number;
}

export interface Auth extends State {
  /**
   * The server knew the user without a token (`--auth proxy`: the proxy in front names
   * them). A later 401 means the proxy's session ended: a new sign-in is the proxy's, by
   * reloading, not a token pasted here.
   */
  byProxy: boolean;
  /** A token is in use (`--auth jwt`); with none the server decides alone (none, proxy). */
  hasToken: boolean;
  /** Resolves null once the server accepted `token`, else what to tell the user. */
  signIn(token: string): Promise<string | null>;
  signOut(): void;
  /** A request was answered 401: the session is over, ask for a new token. */
  expire(): void;
}

export function useAuth(): Auth {
  const [state, setState] = useState<State>({
    phase: "checking",
    userId: null,
    expired: false,
    keepApp: false,
    resumed: 0,
    generation: 0,
  });
  const [hasToken, setHasToken] = useState(() => readToken() !== "");
  const phase = useRef(state.phase);
  phase.current = state.phase;
  const userId = useRef(state.userId);
  userId.current = state.userId;

  useEffect(() => {
    let stale = false;
    const token = readToken();
    void whoAmI(token).then((me) => {
      if (stale) return;
      if (me.kind === "refused") {
        setState((s) => ({ ...s, phase: "signed-out", expired: token !== "" }));
      } else {
        setState((s) => ({ ...s, phase: "signed-in", userId: me.kind === "user" ? me.userId : null }));
      }
    });
    return () => {
      stale = true;
    };
  }, []);

  const signIn = useCallback(async (raw: string) => {
    const token = raw.trim().replace(/^Bearer\s+/i, "");
    if (token === "") return "Paste a token first.";
    const me = await whoAmI(token);
    if (me.kind === "refused") return `The server refused this token: ${me.message}`;
    if (me.kind === "unknown") return "Could not reach the server to check the token. Try again.";
    storeToken(token);
    setHasToken(true);
    if (userId.current !== null && userId.current !== me.userId) leaveChat();
    setState((s) => ({
      phase: "signed-in",
      userId: me.userId,
      expired: false,
      keepApp: false,
      resumed: s.keepApp ? s.resumed + 1 : s.resumed,
      generation: s.userId !== null && s.userId !== me.userId ? s.generation + 1 : s.generation,
    }));
    return null;
  }, []);

  const signOut = useCallback(() => {
    // The messages this user queued offline must not be shown to, or sent as, the next one.
    if (userId.current !== null && userId.current !== LOCAL_USER) {
      ChatSync.clearOfflineQueue({ baseUrl: "/api", userId: userId.current });
    }
    storeToken(null);
    setHasToken(false);
    leaveChat();
    setState((s) => ({ ...s, phase: "signed-out", userId: null, expired: false, keepApp: false }));
  }, []);

  const expire = useCallback(() => {
    if (phase.current !== "signed-in") return;
    setState((s) => (s.phase === "signed-in" ? { ...s, phase: "signed-out", expired: true, keepApp: true } : s));
  }, []);

  // A token pasted in another tab of this app signs this one in too.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === TOKEN_KEY && e.newValue && phase.current === "signed-out") void signIn(e.newValue);
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, [signIn]);

  const byProxy = !hasToken && state.userId !== null && state.userId !== LOCAL_USER;
  return { ...state, hasToken, byProxy, signIn, signOut, expire };
}
