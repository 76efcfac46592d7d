//! Edits drawn from a decision source: few record ids so that edits collide,
//! every field type of the package, splices resolved against the local text.

use serde_json::{Value as Json, json};
use tidemark::Replica;
use tidemark::replica::Edit;

use super::choices::Choices;

pub const IDS: [&str; 3] = ["r1", "r2", "r3"];
/// The fields of `contacts` in the simulation's package.
pub const FIELDS: [&str; 8] = ["name", "email", "age", "vip", "born", "tags", "note", "visits"];

pub const PACKAGE_FIELDS: &str = r#""name": "string", "email": "string", "age": "number", "vip": "bool",
    "born": "datetime", "tags": "json", "note": "text", "visits": "counter""#;

/// The package of version `version`: each version adds a field `extraN`, so a
/// package change reaches every replica without refusing what they hold.
pub fn package_json(version: u64) -> String {
    let extras: String = (2..=version).map(|v| format!(r#", "extra{v}": "string""#)).collect();
    format!(
        r#"{{"version": {version}, "collections": {{
            "contacts": {{"fields": {{{PACKAGE_FIELDS}{extras}}}}},
            "accounts": {{"fields": {{"name": "string"}}}}
        }}}}"#
    )
}

fn letters(c: &mut dyn Choices, max: u64) -> String {
    let len = c.below(max + 1);
    (0..len).map(|_| (b'a' + c.below(4) as u8) as char).collect()
}

fn value(c: &mut dyn Choices, field: &str) -> Json {
    if c.chance(15) {
        return Json::Null;
    }
    match field {
        "name" | "email" => Json::from(letters(c, 4)),
        "age" => json!(c.below(200) as i64 - 100),
        "vip" => json!(c.chance(50)),
        "born" => json!(format!("2026-{:02}-{:02}T10:30:00Z", 1 + c.below(12), 1 + c.below(28))),
        "tags" => json!([letters(c, 2), {"n": c.below(5)}]),
        "visits" => json!(c.below(100) as i64 - 50),
        other => unreachable!("no field {other}"),
    }
}

/// One edit of `contacts` or `accounts`, valid against the replica's view.
pub fn edit(c: &mut dyn Choices, replica: &Replica) -> Edit {
    let id = IDS[c.index(IDS.len())];
    match c.weighted(&[5, 1, 3, 2, 1]) {
        0 => {
            let mut fields = serde_json::Map::new();
            for _ in 0..1 + c.below(3) {
                // A text field takes splices only.
                let f = FIELDS[c.index(FIELDS.len())];
                if f == "note" {
                    continue;
                }
                fields.insert(f.into(), value(c, f));
            }
            Edit::put("contacts", id, Json::Object(fields)).expect("a valid put")
        }
        1 => Edit::Delete {
            collection: if c.chance(50) { "contacts" } else { "accounts" }.into(),
            id: id.into(),
        },
        2 => {
            let len = replica
                .get("contacts", id)
                .expect("readable view")
                .and_then(|f| f.get("note").and_then(Json::as_str).map(|s| s.chars().count()))
                .unwrap_or(0) as u64;
            let pos = c.below(len + 1);
            let del = c.below(len - pos + 1).min(3);
            Edit::Splice {
                collection: "contacts".into(),
                id: id.into(),
                field: "note".into(),
                pos: pos as usize,
                del: del as usize,
                text: letters(c, 3),
            }
        }
        3 => Edit::Increment {
            collection: "contacts".into(),
            id: id.into(),
            field: "visits".into(),
            by: c.below(21) as i64 - 10,
        },
        _ => Edit::put("accounts", id, json!({ "name": letters(c, 3) })).expect("a valid put"),
    }
}
