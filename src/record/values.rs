//! JSON values ↔ automerge scalars, and the checks of values against field types.

use automerge::{ObjType, ScalarValue, ScalarValueRef, Value};
use serde_json::Value as Json;

use super::Fields;
use crate::error::InvalidInput;
use crate::model::{CollectionSchema, FieldType, check_field_name};

pub(super) fn json_to_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        // Nested JSON is one register: stored as its JSON text in a bytes scalar.
        Json::Array(_) | Json::Object(_) => ScalarValue::Bytes(serde_json::to_vec(value).unwrap_or_default()),
    }
}

/// How a non-null value of a field of type `ty` (None: schemaless) is stored,
/// for every type but text (an object, not a scalar): the one mapping that
/// creating a record and putting a field share.
pub(super) fn stored_scalar(ty: Option<FieldType>, value: &Json) -> ScalarValue {
    match ty {
        Some(FieldType::Counter) => ScalarValue::counter(value.as_i64().unwrap_or_default()),
        Some(FieldType::Json) => ScalarValue::Bytes(serde_json::to_vec(value).unwrap_or_default()),
        _ => json_to_scalar(value),
    }
}

/// The JSON a stored scalar shows as in the view.
pub(super) fn scalar_to_json(s: &ScalarValue) -> Json {
    // One mapping for both forms, so the view of a new record (built from the
    // values written) and of a loaded one (read by map range) cannot drift apart.
    scalar_ref_to_json(&ScalarValueRef::from(s.clone()))
}

/// The JSON a scalar shows as in the view, from the borrowed form a map range yields.
pub(super) fn scalar_ref_to_json(s: &ScalarValueRef<'_>) -> Json {
    match s {
        ScalarValueRef::Null => Json::Null,
        ScalarValueRef::Boolean(b) => Json::Bool(*b),
        ScalarValueRef::Int(i) => Json::from(*i),
        ScalarValueRef::Uint(u) => Json::from(*u),
        ScalarValueRef::F64(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        ScalarValueRef::Counter(c) => Json::from(*c),
        ScalarValueRef::Timestamp(t) => Json::from(*t),
        ScalarValueRef::Str(s) => Json::String(s.to_string()),
        ScalarValueRef::Bytes(b) => serde_json::from_slice(b).unwrap_or(Json::Null),
        ScalarValueRef::Unknown { .. } => Json::Null,
    }
}

/// The largest counter value and increment, 2^53 − 1: the largest whole number every
/// JSON reader (JavaScript's too) holds exactly. It also keeps merges from overflowing
/// automerge's i64 sum: 1024 replicas adding it at once still fit.
pub const MAX_COUNTER: i64 = (1 << 53) - 1;

/// How deep a field's JSON value may nest. The view row around it adds a level, and
/// JSON readers (serde_json among them) refuse rows nested beyond 128.
pub const MAX_JSON_DEPTH: usize = 64;

/// True when `n` is a counter value (or increment) tidemark stores.
pub(crate) fn counter_in_range(n: i64) -> bool {
    (-MAX_COUNTER..=MAX_COUNTER).contains(&n)
}

/// How deep a JSON value nests (a scalar is 0, `[1]` is 1), without recursion:
/// the value may come from a program that built it a million levels deep.
pub(crate) fn json_depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Json::Array(items) => stack.extend(items.iter().map(|c| (c, depth + 1))),
            Json::Object(map) => stack.extend(map.values().map(|c| (c, depth + 1))),
            _ => continue,
        }
        deepest = deepest.max(depth + 1);
    }
    deepest
}

/// Refuses a value nested deeper than [`MAX_JSON_DEPTH`]: stored, it could not be read back.
fn check_nesting(field: &str, value: &Json) -> Result<(), InvalidInput> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(InvalidInput::Other(format!(
            "field {field:?} holds JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are stored: flatten the value or store it as a string"
        )));
    }
    Ok(())
}

/// Checks a JSON value against a field type.
pub fn check_value(field: &str, ty: FieldType, value: &Json) -> Result<(), InvalidInput> {
    let wrong = |hint: &'static str| InvalidInput::WrongType {
        field: field.to_string(),
        expected: ty.name(),
        value: truncate_json(value),
        hint,
    };
    if value.is_null() {
        return Ok(());
    }
    check_nesting(field, value)?;
    match ty {
        FieldType::String | FieldType::Text if !value.is_string() => Err(wrong("give a JSON string")),
        FieldType::Number if !value.is_number() => Err(wrong("give a JSON number")),
        FieldType::Bool if !value.is_boolean() => Err(wrong("give true or false")),
        FieldType::Counter if !value.as_i64().is_some_and(counter_in_range) => Err(wrong(
            "give a whole number between -9007199254740991 and 9007199254740991 (2^53 - 1, the largest every JSON reader holds exactly)",
        )),
        FieldType::Datetime => match value.as_str() {
            Some(s) if is_rfc3339(s) => Ok(()),
            _ => Err(wrong("give an RFC 3339 date-time such as \"2026-11-26T15:04:05Z\"")),
        },
        _ => Ok(()),
    }
}

fn truncate_json(value: &Json) -> String {
    let s = value.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(60).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with plausible ranges.
pub(super) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    if b.len() < 20 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' || !digits(8..10) {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6),
        _ => false,
    }
}

/// Checks `fields` against the schema (None: schemaless) without touching a document.
pub fn check_fields(collection: &str, fields: &Fields, schema: Option<&CollectionSchema>) -> Result<(), InvalidInput> {
    for (name, value) in fields {
        check_field_name(name)?;
        let ty = match schema {
            Some(s) => s.field(collection, name)?,
            None => FieldType::Json,
        };
        // Schemaless, every field is `json`: only the nesting limit applies.
        check_value(name, ty, value)?;
    }
    Ok(())
}

/// The kind of a stored value, for a person.
pub(super) fn value_kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Object(ObjType::Text) => "text",
        Value::Object(_) => "object",
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Counter(_) => "counter",
            ScalarValue::Str(_) => "string",
            ScalarValue::Boolean(_) => "bool",
            ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::F64(_) => "number",
            _ => "scalar",
        },
    }
}

pub(super) fn counter_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Counter(c) => Some(i64::from(c)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_checked() {
        assert!(is_rfc3339("2026-11-26T15:04:05Z"));
        assert!(is_rfc3339("2026-11-26T15:04:05.123+01:00"));
        assert!(!is_rfc3339("2026-13-26T15:04:05Z"));
        assert!(!is_rfc3339("yesterday"));
        assert!(!is_rfc3339("2026-11-26T15:04:05"));
    }
}
