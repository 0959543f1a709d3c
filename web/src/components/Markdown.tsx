import { memo, useMemo, type ComponentPropsWithoutRef, type ReactNode } from "react";
import ReactMarkdown, { type Components, type ExtraProps } from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import remarkGfm from "remark-gfm";
import remarkParse from "remark-parse";
import { unified } from "unified";
import { CopyButton } from "./CopyButton";

// Raw HTML in a reply is dropped, never rendered: `skipHtml` removes it before rendering,
// and without rehype-raw react-markdown would only ever show it as text anyway.
const remarkPlugins = [remarkGfm];
const rehypePlugins = [[rehypeHighlight, { detect: false, ignoreMissing: true }]] as never;
const parser = unified().use(remarkParse).use(remarkGfm);

/** The plain text of a rendered code element, for the copy button. */
function textOf(node: ReactNode): string {
  if (typeof node === "string" || typeof node === "number") return String(node);
  if (Array.isArray(node)) return node.map(textOf).join("");
  if (node && typeof node === "object" && "props" in node) {
    return textOf((node.props as { children?: ReactNode }).children);
  }
  return "";
}

/** The language a fence names (`language-js` on its code element), for the block's label. */
function languageOf(node: ReactNode): string | null {
  const child = Array.isArray(node) ? node[0] : node;
  if (!child || typeof child !== "object" || !("props" in child)) return null;
  const className = (child.props as { className?: string }).className ?? "";
  return /(?:^|\s)language-([\w+#.-]+)/.exec(className)?.[1] ?? null;
}

// react-markdown passes its syntax tree node as `node`: it must not reach the DOM.
function Pre({ children, node: _node, ...rest }: ComponentPropsWithoutRef<"pre"> & ExtraProps) {
  const code = textOf(children).replace(/\n$/, "");
  const language = languageOf(children);
  return (
    <div className="code-block" data-testid="code-block">
      <div className="code-head">
        <span className="code-lang" data-testid="code-lang">
          {language ?? "text"}
        </span>
        <CopyButton text={code} what={language ? `${language} code` : "code"} testId="code-copy" />
      </div>
      <pre {...rest}>{children}</pre>
    </div>
  );
}

/** Images that need no request to another origin: inline data, or this app's own origin. */
function loadsHere(src: string): boolean {
  try {
    const url = new URL(src, window.location.href);
    return url.protocol === "data:" || url.origin === window.location.origin;
  } catch {
    return false;
  }
}

/**
 * An image from another origin is shown as a link, never loaded by itself: a reply steered
 * by injected text could otherwise send chat content to that origin in the image's URL.
 */
function Image({ src, alt }: ComponentPropsWithoutRef<"img"> & ExtraProps) {
  if (typeof src !== "string" || src === "") return null;
  if (loadsHere(src)) return <img src={src} alt={alt ?? ""} loading="lazy" />;
  return (
    <a href={src} target="_blank" rel="noopener noreferrer nofollow" className="image-link" data-testid="image-link">
      Image: {alt || src}
    </a>
  );
}

const components: Components = {
  pre: Pre,
  img: Image,
  // A wide table scrolls inside its own box instead of widening the page.
  table: ({ children }) => (
    <div className="table-scroll">
      <table>{children}</table>
    </div>
  ),
  a: ({ children, href }) => (
    <a href={href} target="_blank" rel="noopener noreferrer nofollow">
      {children}
    </a>
  ),
};

/** One top-level block; a finished block's text no longer changes, so it never re-renders. */
const Block = memo(function Block({ source }: { source: string }) {
  return (
    <ReactMarkdown remarkPlugins={remarkPlugins} rehypePlugins={rehypePlugins} components={components} skipHtml>
      {source}
    </ReactMarkdown>
  );
});

/**
 * Splits markdown into its top-level blocks (paragraphs, fences, lists, tables) with the
 * same parser the renderer uses, so a streamed reply re-renders only its last, growing
 * block: the ones above keep their DOM, and nothing flickers or jumps.
 */
export function splitBlocks(text: string): string[] {
  const tree = parser.parse(text);
  const blocks: string[] = [];
  for (const node of tree.children) {
    const start = node.position?.start.offset;
    const end = node.position?.end.offset;
    if (start === undefined || end === undefined) return [text];
    blocks.push(text.slice(start, end));
  }
  return blocks;
}

export function Markdown({ text }: { text: string }) {
  const blocks = useMemo(() => splitBlocks(text), [text]);
  return (
    <div className="markdown">
      {blocks.map((source, i) => (
        <Block key={i} source={source} />
      ))}
    </div>
  );
}
