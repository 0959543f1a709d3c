//! Reads JavaScript values (answers the browser parsed, options objects) into Rust types.
//!
//! A small `serde` deserializer: its errors are plain strings put together without
//! `core::fmt`, so serde's usual error messages (which print the offending number, and with
//! it the whole float formatter) are never compiled in. Every value is still checked
//! against its type.

use js_sys::{Array, Object, Reflect};
use serde::de::{
    DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::Deserializer;
use wasm_bindgen::{JsCast, JsValue};

/// Why a value did not fit its type.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl serde::de::Error for Error {
    // Only reached by hand-written `Deserialize` impls with their own wording (an
    // unparsable UUID, for instance); printing it would compile in the formatters.
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Error("invalid value".to_owned())
    }

    fn invalid_type(unexpected: Unexpected, _expected: &dyn Expected) -> Self {
        Error(["invalid type: ", kind(&unexpected)].concat())
    }

    fn invalid_value(unexpected: Unexpected, _expected: &dyn Expected) -> Self {
        Error(["invalid value: ", kind(&unexpected)].concat())
    }

    fn invalid_length(_len: usize, _expected: &dyn Expected) -> Self {
        Error("invalid length".to_owned())
    }

    fn unknown_variant(variant: &str, _expected: &'static [&'static str]) -> Self {
        Error(["unknown variant `", variant, "`"].concat())
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Error(["unknown field `", field, "`"].concat())
    }

    fn missing_field(field: &'static str) -> Self {
        Error(["missing field `", field, "`"].concat())
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error(["duplicate field `", field, "`"].concat())
    }
}

/// What kind of value was found, without the value itself.
fn kind(unexpected: &Unexpected) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Str(_) | Unexpected::Char(_) => "a string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        _ => "another value",
    }
}

/// Integers beyond this are not exact in a JavaScript number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Reads a value as `T`.
pub fn from_value<T: serde::de::DeserializeOwned>(value: JsValue) -> Result<T, Error> {
    T::deserialize(Value(value))
}

/// One JavaScript value being read. Objects hand over every key they have, so
/// `deny_unknown_fields` sees misspelt options.
struct Value(JsValue);

impl<'de> Deserializer<'de> for Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.0;
        if value.is_null() || value.is_undefined() {
            visitor.visit_unit()
        } else if let Some(b) = value.as_bool() {
            visitor.visit_bool(b)
        } else if let Some(n) = value.as_f64() {
            // Whole numbers go as integers, so integer fields accept them.
            if n.trunc() == n && n.abs() <= MAX_SAFE_INTEGER {
                if n >= 0.0 {
                    visitor.visit_u64(n as u64)
                } else {
                    visitor.visit_i64(n as i64)
                }
            } else {
                visitor.visit_f64(n)
            }
        } else if let Some(s) = value.as_string() {
            visitor.visit_string(s)
        } else if Array::is_array(&value) {
            let array: Array = value.unchecked_into();
            visitor.visit_seq(Items { array, next: 0 })
        } else if value.is_object() {
            visitor.visit_map(Entries::new(value))
        } else {
            Err(Error("unsupported value".to_owned()))
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_null() || self.0.is_undefined() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// Only unit variants are read (roles, statuses, state names): a string.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0.as_string() {
            Some(name) => visitor.visit_enum(UnitVariant(name)),
            None => Err(Error("invalid type: expected a string".to_owned())),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    // Typed requests read only the kind of value they accept, so each visitor's code holds
    // one branch rather than every kind `deserialize_any` handles.

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(found(&self.0)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_f64() {
            Some(n) if n >= 0.0 && n.trunc() == n && n <= MAX_SAFE_INTEGER => {
                visitor.visit_u64(n as u64)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_string() {
            Some(s) => visitor.visit_string(s),
            None => Err(found(&self.0)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if Array::is_array(&self.0) {
            let array: Array = self.0.unchecked_into();
            visitor.visit_seq(Items { array, next: 0 })
        } else {
            Err(found(&self.0))
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_object() && !Array::is_array(&self.0) {
            visitor.visit_map(Entries::new(self.0))
        } else {
            Err(found(&self.0))
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.as_f64() {
            Some(n) => visitor.visit_f64(n),
            None => Err(found(&self.0)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 char bytes byte_buf
        unit unit_struct newtype_struct tuple tuple_struct
    }
}

/// The error for a value of the wrong kind.
fn found(value: &JsValue) -> Error {
    let kind = if value.is_null() || value.is_undefined() {
        "null"
    } else if value.as_bool().is_some() {
        "a boolean"
    } else if value.as_f64().is_some() {
        "a number"
    } else if value.is_string() {
        "a string"
    } else if Array::is_array(value) {
        "an array"
    } else {
        "an object"
    };
    Error(["invalid type: ", kind].concat())
}

struct Items {
    array: Array,
    next: u32,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.next >= self.array.length() {
            return Ok(None);
        }
        let item = self.array.get(self.next);
        self.next += 1;
        seed.deserialize(Value(item)).map(Some)
    }
}

struct Entries {
    object: JsValue,
    keys: Array,
    next: u32,
}

impl Entries {
    fn new(object: JsValue) -> Self {
        let keys = Object::keys(object.unchecked_ref::<Object>());
        Entries {
            object,
            keys,
            next: 0,
        }
    }
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.next >= self.keys.length() {
            return Ok(None);
        }
        seed.deserialize(Value(self.keys.get(self.next))).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let key = self.keys.get(self.next);
        self.next += 1;
        // Reading an own key of a plain object cannot throw.
        let value = Reflect::get(&self.object, &key).unwrap_or(JsValue::UNDEFINED);
        seed.deserialize(Value(value))
    }
}

struct UnitVariant(String);

impl<'de> EnumAccess<'de> for UnitVariant {
    type Error = Error;
    type Variant = Unit;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Unit), Error> {
        let name: serde::de::value::StringDeserializer<Error> = self.0.into_deserializer();
        Ok((seed.deserialize(name)?, Unit))
    }
}

/// The variant named by a string carries no data.
struct Unit;

fn not_a_unit_variant<T>() -> Result<T, Error> {
    Err(Error("invalid type: expected a unit variant".to_owned()))
}

impl<'de> VariantAccess<'de> for Unit {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        not_a_unit_variant()
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        not_a_unit_variant()
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        not_a_unit_variant()
    }
}
