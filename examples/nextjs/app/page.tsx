import { Chat } from "./Chat";

// A server component: the page is rendered on the server, the chat hydrates in the browser.
export default function Home() {
  return (
    <main>
      <h1>chatsync + Next.js</h1>
      <Chat />
    </main>
  );
}
