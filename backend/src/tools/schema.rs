//! A validator for the small JSON Schema subset our tools declare: an object with typed
//! properties (`string`, `number`, `integer`, `boolean`), `required`, `enum` and
//! `additionalProperties: false`. A full JSON Schema crate would be far larger than the
//! few rules the built-in tools need; anything outside the subset is refused when a tool
//! is registered, so a schema never silently means less than it says.

use serde_json::{Map, Value};

const PROPERTY_TYPES: [&str; 4] = ["string", "number", "integer", "boolean"];

/// Checks that a tool's schema stays inside the subset this validator understands.
pub(super) fn check_schema(schema: &Value) -> Result<(), String> {
    let obj = schema.as_object().ok_or("a schema must be a JSON object")?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the arguments schema must have \"type\": \"object\"".into());
    }
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "type" | "properties" | "required" | "additionalProperties" | "description"
        ) {
            return Err(format!("unsupported schema keyword {key:?}"));
        }
    }
    for (name, prop) in obj
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let prop = prop
            .as_object()
            .ok_or_else(|| format!("property {name:?} must be an object"))?;
        let ty = prop.get("type").and_then(Value::as_str);
        if !ty.is_some_and(|t| PROPERTY_TYPES.contains(&t)) {
            return Err(format!("property {name:?} has an unsupported type"));
        }
        for key in prop.keys() {
            if !matches!(key.as_str(), "type" | "description" | "enum") {
                return Err(format!("unsupported keyword {key:?} in property {name:?}"));
            }
        }
    }
    for name in required(obj) {
        if property(obj, name).is_none() {
            return Err(format!("required property {name:?} is not declared"));
        }
    }
    Ok(())
}

fn property<'a>(schema: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    schema.get("properties")?.get(name)
}

fn required(schema: &Map<String, Value>) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Validates arguments against a schema that passed [`check_schema`]. The error names the
/// first problem in words the model can act on.
pub(super) fn validate(schema: &Value, arguments: &Value) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    let Some(args) = arguments.as_object() else {
        return Err(format!(
            "the arguments must be a JSON object, not {}",
            describe(arguments)
        ));
    };
    if let Some(missing) = required(schema).find(|name| !args.contains_key(*name)) {
        return Err(format!("missing required argument {missing:?}"));
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, value) in args {
        let Some(prop) = property(schema, name) else {
            if closed {
                return Err(format!("unexpected argument {name:?}"));
            }
            continue;
        };
        let ty = prop.get("type").and_then(Value::as_str).unwrap_or_default();
        if !has_type(value, ty) {
            return Err(format!(
                "argument {name:?} must be {} {ty}, not {}",
                article(ty),
                describe(value)
            ));
        }
        if let Some(allowed) = prop.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                return Err(format!(
                    "argument {name:?} must be one of {}",
                    list.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        _ => false,
    }
}

fn article(ty: &str) -> &'static str {
    if ty.starts_with('i') {
        "an"
    } else {
        "a"
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "where"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "deep": {"type": "boolean"},
                "unit": {"type": "string", "enum": ["c", "f"]}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    #[test]
    fn the_subset_is_accepted_and_anything_else_refused() {
        assert_eq!(check_schema(&schema()), Ok(()));
        assert_eq!(
            check_schema(&json!({"type": "object", "properties": {}})),
            Ok(())
        );
        for bad in [
            json!({"type": "array"}),
            json!({"type": "object", "oneOf": []}),
            json!({"type": "object", "properties": {"a": {"type": "array"}}}),
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}),
            json!({"type": "object", "required": ["ghost"]}),
        ] {
            assert!(check_schema(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_arguments_pass() {
        let ok = json!({"path": "a.txt", "count": 3, "ratio": 0.5, "deep": true, "unit": "c"});
        assert_eq!(validate(&schema(), &ok), Ok(()));
        assert_eq!(
            validate(&schema(), &json!({"path": "a", "ratio": 2})),
            Ok(())
        );
    }

    #[test]
    fn each_rule_has_its_own_message() {
        let cases = [
            (
                json!("a.txt"),
                "the arguments must be a JSON object, not a string",
            ),
            (json!({}), "missing required argument \"path\""),
            (
                json!({"path": 1}),
                "argument \"path\" must be a string, not a number",
            ),
            (
                json!({"path": "a", "count": 1.5}),
                "argument \"count\" must be an integer, not a number",
            ),
            (
                json!({"path": "a", "deep": "yes"}),
                "argument \"deep\" must be a boolean, not a string",
            ),
            (
                json!({"path": "a", "unit": "k"}),
                "argument \"unit\" must be one of \"c\", \"f\"",
            ),
            (
                json!({"path": "a", "mode": "x"}),
                "unexpected argument \"mode\"",
            ),
        ];
        for (args, want) in cases {
            assert_eq!(validate(&schema(), &args), Err(want.to_string()), "{args}");
        }
    }

    #[test]
    fn open_objects_allow_extra_arguments() {
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(validate(&open, &json!({"a": "x", "b": 1})), Ok(()));
    }
}
