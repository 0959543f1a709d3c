import { useState, type FormEvent } from "react";
import { Dialog } from "./Dialog";

interface Props {
  /** A token stopped working: the user was signed in, or a stored token was refused. */
  expired: boolean;
  /** Resolves null once signed in, else the error to show. */
  onSignIn(token: string): Promise<string | null>;
}

/** Asks for a bearer token (`--auth jwt`). It cannot be dismissed: nothing works without one. */
export function SignInDialog({ expired, onSignIn }: Props) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    const refused = await onSignIn(token);
    setBusy(false);
    setError(refused);
  };

  return (
    <Dialog role="dialog" labelledBy="sign-in-title" describedBy="sign-in-body" testId="sign-in" onClose={null}>
      <form onSubmit={submit} data-expired={expired}>
        <h2 id="sign-in-title">{expired ? "Session expired" : "Sign in"}</h2>
        <p id="sign-in-body" data-testid="sign-in-reason">
          {expired ? "Your session expired, paste a new token." : "This server needs an access token. Paste yours to continue."}
        </p>
        <label className="field-label" htmlFor="sign-in-token">
          Access token
        </label>
        <input
          id="sign-in-token"
          className="field-input"
          data-testid="sign-in-token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          data-autofocus
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-invalid={error !== null}
          aria-describedby={error ? "sign-in-error sign-in-hint" : "sign-in-hint"}
        />
        <p id="sign-in-hint" className="field-hint">
          For development, mint one with <code>chatsync token --sub NAME --secret S --ttl 1h</code>, where S is the
          server's <code>--jwt-secret</code>.
        </p>
        {error && (
          <p id="sign-in-error" className="field-error" data-testid="sign-in-error" role="alert">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="submit" className="button button-primary" data-testid="sign-in-submit" disabled={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/**
 * The authenticating proxy in front (`--auth proxy`) stopped naming the user: its session
 * ended. Only the proxy can sign in again, which it does when the page reloads; sends made
 * meanwhile wait in the offline queue and go out after.
 */
export function SessionEndedDialog() {
  return (
    <Dialog role="dialog" labelledBy="session-ended-title" describedBy="session-ended-body" testId="session-ended" onClose={null}>
      <h2 id="session-ended-title">Signed out</h2>
      <p id="session-ended-body">Your sign-in has ended. Reload the page to sign in again; messages you sent are kept.</p>
      <div className="dialog-actions">
        <button
          type="button"
          className="button button-primary"
          data-testid="session-ended-reload"
          data-autofocus
          onClick={() => window.location.reload()}
        >
          Reload
        </button>
      </div>
    </Dialog>
  );
}
