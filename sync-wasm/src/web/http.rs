//! `fetch` with the options every call of this module needs: extra headers, a token from
//! `getToken`, `credentials`, the app's own `fetch`, and a deadline.

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, Request, RequestCache, RequestCredentials, RequestInit, Response,
};

use super::convert::{describe, to_js, JsBody};
use crate::core::api::HttpRequest;
use crate::core::error::{ErrorKind, SyncError};
use crate::core::options::Credentials;

#[wasm_bindgen]
extern "C" {
    // Bound on the global object rather than on `window`, so the module also runs in
    // workers.
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_request(request: &Request) -> Promise;
}

/// How every request of one `ChatSync` is sent.
pub struct Transport {
    pub headers: Vec<(String, String)>,
    /// Called before every request, so a refreshed token is always the one sent.
    pub get_token: Option<Function>,
    pub fetch: Option<Function>,
    pub credentials: Option<Credentials>,
    pub timeout_ms: u32,
}

/// An answer: status, parsed body and `Retry-After`.
pub struct Reply {
    pub status: u16,
    pub body: JsBody,
    pub retry_after: Option<String>,
}

impl Transport {
    /// Sends `request`; `held_ms` is how long the server may hold it on purpose (a
    /// long-poll), added to the deadline. `abort`, when given, is the controller the
    /// caller keeps to abort the request itself.
    pub async fn send(
        &self,
        request: HttpRequest,
        held_ms: u32,
        abort: Option<AbortController>,
    ) -> Result<Reply, SyncError> {
        let controller = match abort {
            Some(controller) => controller,
            None => AbortController::new().map_err(|e| network(&e))?,
        };
        let request = self.build(request, &controller).await?;
        // A request that never answers would stop polling for good; dropping the timeout
        // when the exchange ends, however it ends, cancels it.
        let deadline = controller.clone();
        let _deadline = Timeout::new(self.timeout_ms.saturating_add(held_ms), move || {
            deadline.abort()
        });
        let sent = match &self.fetch {
            Some(fetch) => fetch
                .call1(&JsValue::UNDEFINED, &request)
                .map(|p| Promise::resolve(&p))
                .map_err(|e| network(&e))?,
            None => fetch_request(&request),
        };
        let response: Response = JsFuture::from(sent)
            .await
            .and_then(|r| r.dyn_into())
            .map_err(|e| network(&e))?;
        let status = response.status();
        let retry_after = response.headers().get("Retry-After").ok().flatten();
        Ok(Reply {
            status,
            body: read_body(&response).await?,
            retry_after,
        })
    }

    async fn build(
        &self,
        request: HttpRequest,
        controller: &AbortController,
    ) -> Result<Request, SyncError> {
        let headers = Headers::new().map_err(|e| network(&e))?;
        let all = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(request.headers.iter().map(|(k, v)| (*k, v.as_str())));
        for (name, value) in all {
            headers
                .set(name, value)
                .map_err(|_| SyncError::invalid(format!("invalid header {name}")))?;
        }
        if let Some(token) = self.token().await? {
            headers
                .set("Authorization", &["Bearer ", &token].concat())
                .map_err(|_| auth("getToken gave a token that is not a valid header value"))?;
        }
        let init = RequestInit::new();
        init.set_method(request.method);
        init.set_headers(&headers);
        // The ETag logic is ours: the browser cache must neither answer for the server nor
        // turn our 304s into 200s.
        init.set_cache(RequestCache::NoStore);
        init.set_signal(Some(&controller.signal()));
        if let Some(credentials) = self.credentials {
            init.set_credentials(match credentials {
                Credentials::Omit => RequestCredentials::Omit,
                Credentials::SameOrigin => RequestCredentials::SameOrigin,
                Credentials::Include => RequestCredentials::Include,
            });
        }
        if let Some(body) = &request.body {
            let json = js_sys::JSON::stringify(&to_js(body)?).map_err(|e| invalid(&e))?;
            init.set_body(&json);
        }
        Request::new_with_str_and_init(&request.url, &init).map_err(|e| invalid(&e))
    }

    /// The token `getToken` gives (a string or a promise of one); empty means none.
    async fn token(&self) -> Result<Option<String>, SyncError> {
        let Some(get_token) = &self.get_token else {
            return Ok(None);
        };
        let given = get_token
            .call0(&JsValue::UNDEFINED)
            .map_err(|e| auth(&describe(&e)))?;
        let token = JsFuture::from(Promise::resolve(&given))
            .await
            .map_err(|e| auth(&describe(&e)))?
            .as_string()
            .ok_or_else(|| auth("getToken must give a string"))?;
        Ok((!token.is_empty()).then_some(token))
    }
}

/// The body parsed as JSON. A 204 or 304 has none; a body that is not JSON (a proxy's
/// error page) reads as none too, and the caller reports what it expected instead.
async fn read_body(response: &Response) -> Result<JsBody, SyncError> {
    if matches!(response.status(), 204 | 304) {
        return Ok(JsBody(JsValue::UNDEFINED));
    }
    let json = response.json().map_err(|e| network(&e))?;
    match JsFuture::from(json).await {
        Ok(value) => Ok(JsBody(value)),
        Err(e) if e.is_instance_of::<js_sys::SyntaxError>() => Ok(JsBody(JsValue::UNDEFINED)),
        Err(e) => Err(network(&e)),
    }
}

fn network(error: &JsValue) -> SyncError {
    SyncError::network(describe(error))
}

fn invalid(error: &JsValue) -> SyncError {
    SyncError::invalid(describe(error))
}

/// `getToken` failed: no request can be made without credentials, so it is an auth error.
fn auth(message: &str) -> SyncError {
    SyncError {
        kind: ErrorKind::Auth,
        ..SyncError::invalid(["getToken: ", message].concat())
    }
}
