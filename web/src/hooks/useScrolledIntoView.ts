import { useEffect, type RefObject } from "react";

/**
 * Brings an element that just appeared (a card under the last message: a failure with
 * Retry, a tool approval) into view, however far down a long chat it lands.
 */
export function useScrolledIntoView(ref: RefObject<HTMLElement | null>) {
  useEffect(() => {
    ref.current?.scrollIntoView({ block: "nearest" });
  }, [ref]);
}
