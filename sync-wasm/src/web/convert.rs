//! Values crossing between Rust and JavaScript, all through `serde-wasm-bindgen`.
//!
//! The browser parses and writes JSON; Rust walks the JavaScript values. Integers stay
//! JavaScript numbers: one beyond 2^53 (`Number.MAX_SAFE_INTEGER`) is an error in both
//! directions, never a silently rounded value. Versions are counters that never get there,
//! and plain numbers keep `view.version + 1` and `JSON.stringify(view)` working, which
//! `BigInt`s would not.

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_wasm_bindgen::Serializer;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::api::Body;
use crate::core::error::SyncError;

/// Maps become plain objects and `None` becomes `null`, exactly as the TypeScript surface
/// describes (`json_compatible`); large integers are refused rather than made `BigInt`s.
const SERIALIZER: Serializer = Serializer::json_compatible();

pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, SyncError> {
    value.serialize(&SERIALIZER).map_err(refused)
}

#[inline(never)]
fn refused(error: serde_wasm_bindgen::Error) -> SyncError {
    SyncError::invalid(error.to_string())
}

/// Reads a value, such as an options object. A misspelt option must be reported, not
/// ignored; `serde-wasm-bindgen` reads a struct by looking up its fields, so it never sees
/// other keys, and they are checked here against the fields `T` declares.
pub fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, SyncError> {
    known_fields(&value, field_names::<T>(), what)?;
    serde_wasm_bindgen::from_value(value).map_err(|e| invalid(what, &e.to_string()))
}

/// The part of `from_js` that does not depend on `T`, kept out of its copies.
#[inline(never)]
fn known_fields(value: &JsValue, fields: Option<&[&str]>, what: &str) -> Result<(), SyncError> {
    if let (Some(fields), Some(object)) = (fields, value.dyn_ref::<js_sys::Object>()) {
        if !js_sys::Array::is_array(object) {
            for key in js_sys::Object::keys(object)
                .iter()
                .filter_map(|k| k.as_string())
            {
                if !fields.contains(&key.as_str()) {
                    return Err(invalid(what, &["unknown field `", &key, "`"].concat()));
                }
            }
        }
    }
    Ok(())
}

#[inline(never)]
fn invalid(what: &str, message: &str) -> SyncError {
    SyncError::invalid([what, ": ", message].concat())
}

/// The field names a struct's `Deserialize` asks for; `None` for anything but a struct.
fn field_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::value::Error as Stop;
    use serde::de::{Deserializer, Error, Visitor};

    struct Probe<'a>(&'a Cell<Option<&'static [&'static str]>>);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(Some(fields));
            Err(Stop::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let fields = Cell::new(None);
    // The probe always stops the deserializer; only what it saw matters.
    let _ = T::deserialize(Probe(&fields));
    fields.get()
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
