//! Values crossing between Rust and JavaScript.
//!
//! The browser parses and writes all JSON; `serde-wasm-bindgen` only walks the JavaScript
//! values. That keeps a JSON codec (and its float formatting) out of the module.

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserializer, Serialize};
use serde_wasm_bindgen::Serializer;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::api::Body;
use crate::core::view::SyncError;

/// A value as JSON would give it to JavaScript: maps become plain objects and `None`
/// becomes `null`, exactly as the TypeScript surface describes.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, SyncError> {
    value
        .serialize(&Serializer::json_compatible())
        .map_err(|e| SyncError::invalid(e.to_string()))
}

/// Reads an options object. A misspelt option must be reported, not ignored.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, SyncError> {
    T::deserialize(EveryKey(value.into())).map_err(|e| SyncError::invalid(format!("{what}: {e}")))
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

/// `serde-wasm-bindgen` reads only the keys a struct names, so `deny_unknown_fields` would
/// never fire. This deserializer hands the struct every key of the object instead.
struct EveryKey(serde_wasm_bindgen::Deserializer);

impl<'de> Deserializer<'de> for EveryKey {
    type Error = serde_wasm_bindgen::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
