import { useState, type FormEvent } from 'react'
import { useChatStateSync } from '@chatsync/sync-wasm/react'

/** A minimal chat: create a chat, send, watch the reply stream, stop it, approve tools. */
export default function App() {
  const { ready, error, view, contextId, actions } = useChatStateSync(null, { baseUrl: '/api' })
  const [text, setText] = useState('')
  const [failure, setFailure] = useState<string | null>(null)

  const run = (action: () => Promise<unknown>) => {
    setFailure(null)
    action().catch((e: unknown) => setFailure(e instanceof Error ? e.message : String(e)))
  }

  const send = (event: FormEvent) => {
    event.preventDefault()
    const message = text.trim()
    if (!message) return
    setText('')
    run(async () => {
      // A new chat on the first message: createContext switches the hook to it at once.
      if (!contextId) await actions.createContext({ title: message.slice(0, 40) })
      await actions.sendMessage(message)
    })
  }

  if (error) return <p role="alert">The chat could not start: {String(error)}</p>
  if (!ready) return <p data-testid="loading">Loading…</p>

  return (
    <main data-testid="chat" data-status={view.status ?? 'none'}>
      <h1>chatsync + Vite</h1>
      <ol data-testid="messages">
        {view.messages.map((m) => (
          <li key={m.clientMessageId ?? m.id} data-role={m.role} data-status={m.status}>
            <b>{m.role}:</b> {m.text}
          </li>
        ))}
      </ol>
      {view.status === 'awaiting_approval' &&
        view.pendingToolCalls.map((call) => (
          <p key={call.id}>
            Run <code>{call.name}</code> with <code>{JSON.stringify(call.arguments)}</code>?{' '}
            <button onClick={() => run(() => actions.approveTools([call.id]))}>Approve</button>
          </p>
        ))}
      <form onSubmit={send}>
        <input
          aria-label="Message"
          value={text}
          onChange={(e) => setText(e.target.value)}
          placeholder="Say something"
        />
        <button type="submit">Send</button>
        {view.status === 'running' && (
          <button type="button" onClick={() => run(() => actions.cancel())}>
            Stop
          </button>
        )}
      </form>
      {failure && <p role="alert">{failure}</p>}
    </main>
  )
}
