import { useRef } from "react";
import type { ChatView } from "@chatsync/sync-wasm";
import { chatAsJson, chatAsMarkdown, download, fileName } from "../exportChat";

/** Export as Markdown or JSON, downloaded from what the page shows. */
export function ExportMenu({ title, view }: { title: string; view: ChatView }) {
  const menu = useRef<HTMLDetailsElement>(null);
  const save = (kind: "md" | "json") => {
    if (kind === "md") download(fileName(title, "md"), "text/markdown", chatAsMarkdown(title, view));
    else download(fileName(title, "json"), "application/json", chatAsJson(title, view));
    menu.current?.removeAttribute("open");
  };
  return (
    <details
      ref={menu}
      className="menu"
      onKeyDown={(e) => {
        if (e.key === "Escape" && menu.current?.open) {
          e.stopPropagation();
          e.preventDefault();
          menu.current.removeAttribute("open");
          menu.current.querySelector("summary")?.focus();
        }
      }}
    >
      <summary className="button" data-testid="export-menu">
        Export
      </summary>
      <div className="menu-items">
        <button type="button" data-testid="export-markdown" onClick={() => save("md")}>
          Markdown (.md)
        </button>
        <button type="button" data-testid="export-json" onClick={() => save("json")}>
          JSON (.json)
        </button>
      </div>
    </details>
  );
}
