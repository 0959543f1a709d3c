import { memo, useMemo, type ComponentPropsWithoutRef, type ReactNode } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
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

function Pre({ children, ...rest }: ComponentPropsWithoutRef<"pre">) {
  const code = textOf(children).replace(/\n$/, "");
  return (
    <div className="code-block" data-testid="code-block">
      <CopyButton text={code} what="code" testId="code-copy" />
      <pre {...rest}>{children}</pre>
    </div>
  );
}

const components: Components = {
  pre: Pre,
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
