import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import init from "@chatsync/sync-wasm";
import { Session } from "./Session";
import { applyTheme, readTheme } from "./hooks/useTheme";
import "./styles.css";

// The chosen theme applies before anything renders, so nothing flashes in the other one.
applyTheme(readTheme());

const root = createRoot(document.getElementById("root")!);

// The wasm module must be instantiated once before any ChatSync exists.
init().then(
  () =>
    root.render(
      <StrictMode>
        <Session />
      </StrictMode>,
    ),
  (e: unknown) =>
    root.render(
      <div className="fatal" data-testid="fatal-error" role="alert">
        The sync module failed to load: {String(e)}
      </div>,
    ),
);
