//! `fetch` with the options every call of this module needs.

use gloo_timers::callback::Timeout;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, AbortSignal, Headers, Request, RequestCache, RequestInit, Response,
};

use super::convert::{describe, to_js, JsBody};
use crate::core::api::HttpRequest;
use crate::core::view::SyncError;

/// A request that has not answered after this long is aborted and counts as a network
/// error; without a limit one hung poll would stop polling for good.
const TIMEOUT_MS: u32 = 15_000;

#[wasm_bindgen]
extern "C" {
    // Bound on the global object rather than on `window`, so the module also runs in
    // workers.
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_request(request: &Request) -> Promise;
}

/// Status and parsed body of the answer, or a network error.
pub async fn send(
    extra_headers: &[(String, String)],
    request: HttpRequest,
) -> Result<(u16, JsBody), SyncError> {
    let controller = AbortController::new().map_err(|e| network(&e))?;
    let signal = controller.signal();
    // Dropping the timeout when the exchange ends, however it ends, cancels it.
    let _deadline = Timeout::new(TIMEOUT_MS, move || controller.abort());
    exchange(&signal, extra_headers, request).await
}

async fn exchange(
    signal: &AbortSignal,
    extra_headers: &[(String, String)],
    request: HttpRequest,
) -> Result<(u16, JsBody), SyncError> {
    let headers = Headers::new().map_err(|e| network(&e))?;
    let all = extra_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(request.headers.iter().map(|(k, v)| (*k, v.as_str())));
    for (name, value) in all {
        headers
            .set(name, value)
            .map_err(|_| SyncError::invalid(format!("invalid header {name}")))?;
    }
    let init = RequestInit::new();
    init.set_method(request.method);
    init.set_headers(&headers);
    // The ETag logic is ours: the browser cache must neither answer for the server nor
    // turn our 304s into 200s.
    init.set_cache(RequestCache::NoStore);
    init.set_signal(Some(signal));
    if let Some(body) = &request.body {
        let json = js_sys::JSON::stringify(&to_js(body)?).map_err(|e| invalid(&e))?;
        init.set_body(&json);
    }
    let request = Request::new_with_str_and_init(&request.url, &init).map_err(|e| invalid(&e))?;
    let response: Response = JsFuture::from(fetch_request(&request))
        .await
        .and_then(|r| r.dyn_into())
        .map_err(|e| network(&e))?;
    let status = response.status();
    Ok((status, read_body(&response).await?))
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
