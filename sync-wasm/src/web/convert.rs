//! Values crossing between Rust and JavaScript.
//!
//! The browser parses and writes all JSON; Rust only walks the JavaScript values (`de` to
//! read them, `ser` to write them). That keeps a JSON codec (and its float formatting) out
//! of the module.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{de, ser};
use crate::core::api::Body;
use crate::core::view::SyncError;

/// A value as JSON would give it to JavaScript: maps become plain objects and `None`
/// becomes `null`, exactly as the TypeScript surface describes.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, SyncError> {
    ser::to_value(value).map_err(|e| SyncError::invalid(e.0))
}

/// Reads an options object. A misspelt option must be reported, not ignored: every key of
/// the object reaches the struct, so `deny_unknown_fields` applies.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, SyncError> {
    de::from_value(value).map_err(|e| SyncError::invalid([what, ": ", &e.0].concat()))
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
        de::from_value(self.0.clone()).map_err(|e| e.0)
    }
}
