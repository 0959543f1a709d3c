import { useLayoutEffect, useRef, type KeyboardEvent, type ReactNode } from "react";

const ITEMS = "button:not(:disabled)";

/**
 * A row of actions that is one Tab stop (WAI-ARIA toolbar): Tab enters on the button used
 * last (the first at the start), the arrow keys, Home and End move along the row. So a long
 * chat does not cost several Tab presses per message.
 */
export function Toolbar({ label, className, children }: { label: string; className: string; children: ReactNode }) {
  const bar = useRef<HTMLDivElement>(null);
  const current = useRef(0);

  const items = () => [...(bar.current?.querySelectorAll<HTMLElement>(ITEMS) ?? [])];
  const mark = (at: number) => {
    const list = items();
    current.current = Math.min(Math.max(at, 0), list.length - 1);
    list.forEach((item, i) => (item.tabIndex = i === current.current ? 0 : -1));
  };
  // After every render: buttons come and go (a switcher at its end, a disabled one).
  useLayoutEffect(() => mark(current.current));

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const list = items();
    const at = list.indexOf(document.activeElement as HTMLElement);
    if (at < 0) return;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: list.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    mark((to + list.length) % list.length);
    list[current.current]?.focus();
  };

  return (
    <div
      ref={bar}
      className={className}
      role="toolbar"
      aria-label={label}
      onKeyDown={onKeyDown}
      onFocus={(e) => {
        const at = items().indexOf(e.target as HTMLElement);
        if (at >= 0) mark(at);
      }}
    >
      {children}
    </div>
  );
}
