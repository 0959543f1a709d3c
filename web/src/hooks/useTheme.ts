import { useCallback, useState } from "react";
import { readPref, writePref } from "../prefs";

export type Theme = "system" | "light" | "dark";

export const readTheme = (): Theme => {
  const stored = readPref("theme");
  return stored === "light" || stored === "dark" ? stored : "system";
};

/** `data-theme` on <html> picks the colour scheme; without it the system's applies. */
export function applyTheme(theme: Theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

/** The theme toggle's choice, kept in this browser. */
export function useTheme(): [Theme, (theme: Theme) => void] {
  const [theme, setTheme] = useState(readTheme);
  const choose = useCallback((next: Theme) => {
    applyTheme(next);
    writePref("theme", next === "system" ? null : next);
    setTheme(next);
  }, []);
  return [theme, choose];
}
