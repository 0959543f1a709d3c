//! Values crossing between Rust and JavaScript, all through `serde-wasm-bindgen`.
//!
//! The browser parses and writes JSON; Rust walks the JavaScript values. Integers stay
//! JavaScript numbers: one beyond 2^53 (`Number.MAX_SAFE_INTEGER`) is an error in both
//! directions, never a silently rounded value. Versions are counters that never get there,
//! and plain numbers keep `view.version + 1` and `JSON.stringify(view)` working, which
//! `BigInt`s would not.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_wasm_bindgen::Serializer;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::api::Body;
use crate::core::view::SyncError;

/// Maps become plain objects and `None` becomes `null`, exactly as the TypeScript surface
/// describes (`json_compatible`); large integers are refused rather than made `BigInt`s.
const SERIALIZER: Serializer = Serializer::json_compatible();

pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, SyncError> {
    value
        .serialize(&SERIALIZER)
        .map_err(|e| SyncError::invalid(e.to_string()))
}

/// Reads an options object. A misspelt option must be reported, not ignored: every key of
/// the object reaches the struct, so `deny_unknown_fields` applies.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, SyncError> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|e| SyncError::invalid([what, ": ", &e.to_string()].concat()))
}

/// Reads an optional options object; missing means every option at its default.
pub fn optional_from_js<T: DeserializeOwned + Default>(
    value: Option<JsValue>,
    what: &str,
) -> Result<T, SyncError> {
    value.map_or_else(|| Ok(T::default()), |v| from_js(v, what))
}

/// The message of a JavaScript exception, for a `SyncError`.
pub fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "request failed".to_owned())
}

/// An answer's body as the browser parsed it; `undefined` when there was none.
#[derive(Debug)]
pub struct JsBody(pub JsValue);

impl Body for JsBody {
    fn read<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_wasm_bindgen::from_value(self.0.clone()).map_err(|e| e.to_string())
    }
}
