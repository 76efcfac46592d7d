//! JSON Schemas of wire values that utoipa's derives cannot state exactly: the
//! rule for space and user names, and the rule for collection and field names
//! as the keys of a package's maps. A bound in the OpenAPI document is a
//! promise both ways: a request within it is served, one outside it is refused
//! with 400 (CI holds the live server to both with schemathesis).

use utoipa::openapi::Ref;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::model::{MAX_ACCOUNT_NAME, MAX_NAME_BYTES};

/// A space or user name, the rule `service::check_name` enforces: 1 to 64
/// ASCII letters, digits, `.`, `_` or `-`, starting with a letter or digit,
/// without `..`, and not a Windows device name before its first dot.
pub fn account_name() -> Object {
    // No lookahead: every '.' is followed by another allowed character or ends the name.
    let pattern = r"^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$";
    let device = r"^([Cc][Oo][Nn]|[Pp][Rr][Nn]|[Aa][Uu][Xx]|[Nn][Uu][Ll]|[Cc][Oo][Mm][0-9]|[Ll][Pp][Tt][0-9])(\.|$)";
    // utoipa's schema types have no `not`; their extensions are written into
    // the schema object itself, which is where JSON Schema reads `not`.
    let not = Extensions::from_iter([("not", serde_json::json!({ "pattern": device }))]);
    let mut name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ACCOUNT_NAME))
        .pattern(Some(pattern))
        .description(Some(format!(
            "1 to {MAX_ACCOUNT_NAME} ASCII letters, digits, '.', '_' or '-', starting with a letter or digit, \
             without '..', and not a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, in any case, \
             alone or before a '.')"
        )))
        .build();
    name.extensions = Some(not);
    name
}

/// Characters `char::is_control` names (Unicode category Cc), which no name may hold.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

/// A collection name in a package: 1 to 256 bytes of UTF-8 without control
/// characters. JSON Schema counts characters, not bytes: the pattern and
/// lengths here are exact for ASCII names, and the description says the rest.
pub fn collection_name() -> Object {
    name_schema(format!("^[^{CONTROL}]+$"), "")
}

/// A field name in a package: a collection name's rule, and not starting with
/// `_` (reserved for the record's own keys).
pub fn field_name() -> Object {
    name_schema(format!("^[^_{CONTROL}][^{CONTROL}]*$"), ", not starting with '_'")
}

/// A package's collections by name.
pub fn collections() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(Ref::from_schema_name("CollectionSchema")))
        .property_names(Some(collection_name()))
        .build()
}

/// A collection's fields by name, with their types.
pub fn fields() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(Ref::from_schema_name("FieldType")))
        .property_names(Some(field_name()))
        .build()
}

fn name_schema(pattern: String, more: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_BYTES))
        .pattern(Some(pattern))
        .description(Some(format!(
            "1 to {MAX_NAME_BYTES} bytes of UTF-8 (so fewer characters where some take several bytes), \
             without control characters{more}"
        )))
        .build()
}
