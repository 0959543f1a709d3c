import { App } from "./App";
import { SessionEndedDialog, SignInDialog } from "./components/SignInDialog";
import { LOCAL_USER, useAuth } from "./hooks/useAuth";

/**
 * Who is using the app. With `--auth jwt` the server answers `GET /api/me` 401 until a
 * token is pasted; a later 401 (the token expired) asks again over the app, which stays
 * as it was, and resumes syncing once a new token is accepted. With `--auth none` or
 * `proxy` the server knows the user on its own and no sign-in shows unless it answers 401;
 * behind a proxy that 401 means the proxy's session ended, and reloading signs in again.
 */
export function Session() {
  const auth = useAuth();
  if (auth.phase === "checking") return null;
  const signedIn = auth.phase === "signed-in";
  // `--auth none` answers "local" for everyone: nobody worth naming.
  const user = auth.hasToken || auth.userId !== LOCAL_USER ? auth.userId : null;
  return (
    <>
      {(signedIn || auth.keepApp) && (
        <App
          // Another user after an expiry gets a fresh app: nothing of the last one's shows.
          key={auth.generation}
          user={user}
          userId={auth.userId}
          onSignOut={auth.hasToken ? auth.signOut : null}
          onAuthError={auth.expire}
          resumed={auth.resumed}
          inert={!signedIn}
        />
      )}
      {!signedIn &&
        (auth.byProxy ? <SessionEndedDialog /> : <SignInDialog expired={auth.expired} onSignIn={auth.signIn} />)}
    </>
  );
}
