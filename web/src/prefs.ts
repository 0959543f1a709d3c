/**
 * What the app keeps in this browser besides the sign-in: the user's own unsent drafts and
 * choices (theme, last chat opened), never a copy of what the server holds. Each value
 * lives under one `chatsync-pref:` key and is bounded by its writer; without storage they
 * last as long as the page.
 */
const PREFIX = "chatsync-pref:";

export type PrefKey = "drafts" | "theme" | "last-chat";

export function readPref(key: PrefKey): string | null {
  try {
    return localStorage.getItem(PREFIX + key);
  } catch {
    return null;
  }
}

export function writePref(key: PrefKey, value: string | null) {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, value);
  } catch {
    // Storage full or refused: the value lasts as long as the page.
  }
}

/** Reads a JSON value written by `writeJsonPref`; anything unreadable is `fallback`. */
export function readJsonPref<T>(key: PrefKey, fallback: T, valid: (v: unknown) => v is T): T {
  const raw = readPref(key);
  if (raw === null) return fallback;
  try {
    const value: unknown = JSON.parse(raw);
    return valid(value) ? value : fallback;
  } catch {
    return fallback;
  }
}
