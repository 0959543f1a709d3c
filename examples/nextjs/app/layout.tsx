import type { Metadata } from "next";
import "./globals.css";

export const metadata: Metadata = {
  title: "chatsync + Next.js",
  description: "A minimal chat on @chatsync/sync-wasm",
};

export default function RootLayout({ children }: LayoutProps<"/">) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
