//! The edits both convergence suites generate: few record ids so that edits
//! collide, every field type of the CRM package, and their translation into
//! tidemark edits against a replica's current view.

#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use tidemark::Replica;
use tidemark::replica::Edit;

/// The shared record ids: few, so that edits collide.
pub const IDS: [&str; 3] = ["r1", "r2", "r3"];
/// The fields of `contacts` in the CRM package (`accounts` only has `name`).
pub const FIELDS: [&str; 8] = ["name", "email", "age", "vip", "born", "tags", "note", "visits"];

/// One local edit, generated independently of the replica's state; splice
/// positions are raw numbers reduced modulo the note's length in the local view
/// when the edit runs, so they are always valid.
#[derive(Debug, Clone)]
pub enum EditAction {
    /// Upsert fields of `contacts/IDS[id]` (or `accounts/IDS[id]`, name only); null removes a field (clears a counter or text).
    Put {
        accounts: bool,
        id: usize,
        fields: Vec<(usize, Json)>,
    },
    Delete {
        accounts: bool,
        id: usize,
    },
    /// Splice the `note` text field of `contacts/IDS[id]` (packaged runs only).
    Splice {
        id: usize,
        pos: u8,
        del: u8,
        text: String,
    },
    /// Add `by` to the `visits` counter of `contacts/IDS[id]` (packaged runs only).
    Increment {
        id: usize,
        by: i64,
    },
}

// ---------------------------------------------------------------- strategies

pub fn field_value(field: usize) -> BoxedStrategy<Json> {
    let null = Just(Json::Null);
    match FIELDS[field] {
        "name" | "email" => prop_oneof![1 => null, 4 => "[a-z]{0,4}".prop_map(Json::from)].boxed(),
        "age" => prop_oneof![
            1 => null,
            3 => (-1000i64..1000).prop_map(Json::from),
            1 => (-400i32..400).prop_map(|q| json!(f64::from(q) / 4.0)),
        ]
        .boxed(),
        "vip" => prop_oneof![1 => null, 3 => any::<bool>().prop_map(Json::from)].boxed(),
        "born" => prop_oneof![
            1 => null,
            3 => (1u32..=12, 1u32..=28, 0u32..24).prop_map(|(m, d, h)| json!(format!("2026-{m:02}-{d:02}T{h:02}:30:00Z"))),
        ]
        .boxed(),
        "tags" => prop_oneof![
            1 => null,
            2 => prop::collection::vec("[a-z]{1,3}", 0..3).prop_map(|v| json!(v)),
            1 => (-5i64..5, "[a-z]{0,3}").prop_map(|(n, s)| json!({"n": n, "s": s, "nested": [n, {"k": s}]})),
        ]
        .boxed(),
        "note" => prop_oneof![1 => null, 4 => "[a-z ]{0,6}".prop_map(Json::from)].boxed(),
        "visits" => prop_oneof![1 => null, 4 => (-50i64..50).prop_map(Json::from)].boxed(),
        other => unreachable!("no field {other}"),
    }
}

pub fn put_fields(accounts: bool) -> BoxedStrategy<Vec<(usize, Json)>> {
    let field = if accounts {
        (0usize..1).boxed()
    } else {
        (0usize..FIELDS.len()).boxed()
    };
    prop::collection::vec(field.prop_flat_map(|f| (Just(f), field_value(f))), 1..4).boxed()
}

pub fn put_or_delete() -> BoxedStrategy<EditAction> {
    let id = 0..IDS.len();
    prop_oneof![
        6 => (any::<bool>(), id.clone())
            .prop_flat_map(|(accounts, id)| put_fields(accounts).prop_map(move |fields| EditAction::Put { accounts, id, fields })),
        1 => (any::<bool>(), id).prop_map(|(accounts, id)| EditAction::Delete { accounts, id }),
    ]
    .boxed()
}

pub fn increment() -> BoxedStrategy<EditAction> {
    (0..IDS.len(), -10i64..=10)
        .prop_map(|(id, by)| EditAction::Increment { id, by })
        .boxed()
}

pub fn splice() -> BoxedStrategy<EditAction> {
    (0..IDS.len(), any::<u8>(), 0u8..4, "[a-zA-Z ]{0,4}")
        .prop_map(|(id, pos, del, text)| EditAction::Splice { id, pos, del, text })
        .boxed()
}

/// Schemaless spaces hold scalar registers only, so splices and increments
/// (a text object, a counter) are only generated for packaged runs.
pub fn edit_action(packaged: bool) -> BoxedStrategy<EditAction> {
    if packaged {
        prop_oneof![5 => put_or_delete(), 3 => splice(), 2 => increment()].boxed()
    } else {
        put_or_delete()
    }
}

/// A splice that is valid whatever the batch did to the text before it.
pub fn insert_at_start() -> BoxedStrategy<EditAction> {
    (0..IDS.len(), "[a-zA-Z ]{1,4}")
        .prop_map(|(id, text)| EditAction::Splice {
            id,
            pos: 0,
            del: 0,
            text,
        })
        .boxed()
}

pub fn batch_edit(packaged: bool) -> BoxedStrategy<EditAction> {
    if packaged {
        prop_oneof![3 => put_or_delete(), 1 => increment(), 1 => insert_at_start()].boxed()
    } else {
        put_or_delete()
    }
}

/// splitmix64: a tiny deterministic generator for delivery orders and page sizes.
pub struct Mix(pub u64);

impl Mix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn target(edit: &EditAction) -> (&'static str, &'static str) {
    match edit {
        EditAction::Put { accounts, id, .. } | EditAction::Delete { accounts, id } => {
            (if *accounts { "accounts" } else { "contacts" }, IDS[*id])
        }
        EditAction::Splice { id, .. } | EditAction::Increment { id, .. } => ("contacts", IDS[*id]),
    }
}

/// Turns a generated edit into a tidemark edit, resolving splice positions
/// against the replica's current view of the note (an absent note, or an absent
/// record, has length 0: position 0 is always valid).
pub fn to_edit(replica: &Replica, edit: &EditAction) -> Edit {
    let (collection, id) = target(edit);
    match edit {
        EditAction::Put { fields, .. } => {
            let fields: serde_json::Map<String, Json> = fields
                .iter()
                .map(|(f, v)| (FIELDS[*f].to_string(), v.clone()))
                .collect();
            Edit::put(collection, id, Json::Object(fields)).unwrap()
        }
        EditAction::Delete { .. } => Edit::Delete {
            collection: collection.into(),
            id: id.into(),
        },
        EditAction::Splice { pos, del, text, .. } => {
            let len = replica
                .get(collection, id)
                .unwrap()
                .and_then(|f| f.get("note").and_then(Json::as_str).map(|s| s.chars().count()))
                .unwrap_or(0);
            let pos = usize::from(*pos) % (len + 1);
            let del = usize::from(*del) % (len - pos + 1);
            Edit::Splice {
                collection: collection.into(),
                id: id.into(),
                field: "note".into(),
                pos,
                del,
                text: text.clone(),
            }
        }
        EditAction::Increment { by, .. } => Edit::Increment {
            collection: collection.into(),
            id: id.into(),
            field: "visits".into(),
            by: *by,
        },
    }
}

/// View rows with the JSON as text, so failures are readable (same bytes, same text).
pub fn readable(rows: &[(String, String, Vec<u8>)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(c, i, row)| {
            (
                c.clone(),
                i.clone(),
                String::from_utf8(row.clone()).expect("view rows are UTF-8 JSON"),
            )
        })
        .collect()
}
