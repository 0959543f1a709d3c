//! `fetch` with the options every call of this module needs.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, Request, RequestCache, RequestInit, Response};

use crate::core::api::HttpRequest;
use crate::core::view::SyncError;

/// A request that has not answered after this long is aborted and counts as a network
/// error; without a limit one hung poll would stop polling for good.
const TIMEOUT_MS: i32 = 15_000;

#[wasm_bindgen]
extern "C" {
    // Bound on the global object rather than on `window`, so the module also runs in
    // workers.
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_request(request: &Request) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &JsValue, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(handle: &JsValue);
}

/// Status and body text of the answer, or a network error.
pub async fn send(
    extra_headers: &[(String, String)],
    request: HttpRequest,
) -> Result<(u16, String), SyncError> {
    let controller = AbortController::new().map_err(|e| network(&e))?;
    let abort = {
        let controller = controller.clone();
        Closure::<dyn FnMut()>::new(move || controller.abort())
    };
    let timer = set_timeout(abort.as_ref(), TIMEOUT_MS);
    let answer = exchange(&controller, extra_headers, request).await;
    // Cleared before `abort` is dropped, so the timer can never call a freed closure.
    clear_timeout(&timer);
    answer
}

async fn exchange(
    controller: &AbortController,
    extra_headers: &[(String, String)],
    request: HttpRequest,
) -> Result<(u16, String), SyncError> {
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
    init.set_signal(Some(&controller.signal()));
    if let Some(body) = &request.body {
        init.set_body(&JsValue::from_str(body));
    }
    let request = Request::new_with_str_and_init(&request.url, &init)
        .map_err(|e| SyncError::invalid(describe(&e)))?;
    let response: Response = JsFuture::from(fetch_request(&request))
        .await
        .and_then(|r| r.dyn_into())
        .map_err(|e| network(&e))?;
    let text = response.text().map_err(|e| network(&e))?;
    let body = JsFuture::from(text).await.map_err(|e| network(&e))?;
    Ok((response.status(), body.as_string().unwrap_or_default()))
}

fn network(error: &JsValue) -> SyncError {
    SyncError::network(describe(error))
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "request failed".to_owned())
}
