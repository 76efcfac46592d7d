//! A record's row in the view: what its document materializes to. The replica
//! and the server compute it with the same function, so a row the server keeps
//! beside its document is the row the replica would compute from those bytes,
//! and a snapshot can carry it instead of making every client load the document.

use super::values::{scalar_to_json, stored_scalar};
use super::{Fields, RecordDoc};
use crate::error::CorruptData;
use crate::model::{CollectionSchema, FieldType};

/// The rules [`RecordDoc::row`] renders by, bumped whenever the same document
/// would give another row (its fields or its conflict count). A replica
/// counts its conflict marks again when its store was counted by older rules
/// (`replica::recount`), and takes a row from a snapshot only if it was made
/// by these rules: a server of another build may render by others.
pub const ROW_RULES: u32 = 2;

/// What a record document materializes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Canonical JSON of the fields (compact, keys sorted); None when the record
    /// is deleted or was never written.
    pub fields: Option<Vec<u8>>,
    /// Number of fields with concurrent values that differ.
    pub conflicts: u32,
}

impl RecordDoc {
    /// The record's row. Renders the same bytes on every replica: serde_json's
    /// map keeps keys sorted. Conflicts are counted in the same pass.
    pub fn row(&self) -> Row {
        let state = self.state();
        let fields = if state.deleted || state.empty {
            None
        } else {
            Some(serde_json::to_vec(&state.fields).expect("JSON values always serialize"))
        };
        Row {
            fields,
            conflicts: state.conflicted_fields,
        }
    }
}

/// Applies a put to the fields of a live record without conflicting values,
/// without its document: the fields [`RecordDoc::row`] renders after
/// [`RecordDoc::put`] of `put`, by the conversions `create` uses for a new
/// record. None, leaving `fields` in part changed, where only the document
/// knows: a text or counter field (edited in place), or a put that changes no
/// field (automerge may then write nothing). A field the put leaves as it is
/// (its value again, a null for a field that is not there) reads the same
/// whether or not automerge writes it again.
pub fn put_onto_fields(fields: &mut Fields, put: &Fields, schema: Option<&CollectionSchema>) -> Option<()> {
    let mut changed = false;
    for (name, value) in put {
        let ty = match schema {
            Some(s) => Some(*s.fields.get(name)?),
            None => None,
        };
        if matches!(ty, Some(FieldType::Text | FieldType::Counter)) {
            return None;
        }
        if value.is_null() {
            changed |= fields.remove(name).is_some();
            continue;
        }
        let shown = scalar_to_json(&stored_scalar(ty, value));
        if fields.get(name) != Some(&shown) {
            fields.insert(name.clone(), shown);
            changed = true;
        }
    }
    changed.then_some(())
}

impl Row {
    /// The stored form: `[ROW_RULES u32 LE][conflicts u32 LE][fields JSON]`,
    /// no JSON for a record without fields (a JSON object is never empty bytes).
    pub fn encode(&self) -> Vec<u8> {
        let fields = self.fields.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(8 + fields.len());
        out.extend_from_slice(&ROW_RULES.to_le_bytes());
        out.extend_from_slice(&self.conflicts.to_le_bytes());
        out.extend_from_slice(fields);
        out
    }

    /// Reads [`Row::encode`]'s form back; None for a row made by other rules.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, CorruptData> {
        let Some((head, fields)) = bytes.split_first_chunk::<8>() else {
            return Err(CorruptData::new(
                "stored row",
                format!("{} bytes, at least 8 expected", bytes.len()),
            ));
        };
        let (rules, conflicts) = head.split_at(4);
        if u32::from_le_bytes(rules.try_into().expect("4 bytes")) != ROW_RULES {
            return Ok(None);
        }
        Ok(Some(Row {
            fields: (!fields.is_empty()).then(|| fields.to_vec()),
            conflicts: u32::from_le_bytes(conflicts.try_into().expect("4 bytes")),
        }))
    }

    /// A row that came from outside (a snapshot): its fields must be one JSON
    /// object, as the view's readers expect. They are JSON already: a
    /// [`RawValue`](serde_json::value::RawValue) is checked when it is read.
    pub fn from_outside(fields: Option<&serde_json::value::RawValue>, conflicts: u32) -> Result<Self, CorruptData> {
        let fields = fields.map(|raw| raw.get());
        if let Some(json) = fields
            && !json.trim_start().starts_with('{')
        {
            return Err(CorruptData::new("snapshot row", "the fields are not a JSON object"));
        }
        Ok(Row {
            fields: fields.map(|json| json.as_bytes().to_vec()),
            conflicts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_reads_back() {
        for row in [
            Row {
                fields: Some(br#"{"a":1}"#.to_vec()),
                conflicts: 3,
            },
            Row {
                fields: None,
                conflicts: 0,
            },
        ] {
            assert_eq!(Row::decode(&row.encode()).unwrap(), Some(row));
        }
        assert!(Row::decode(&[1, 2]).is_err());
        let mut other_rules = Row {
            fields: None,
            conflicts: 1,
        }
        .encode();
        other_rules[0] ^= 1;
        assert_eq!(
            Row::decode(&other_rules).unwrap(),
            None,
            "a row made by other rules is not taken"
        );
    }

    #[test]
    fn a_row_from_outside_must_be_an_object() {
        let raw = |text: &str| serde_json::from_str::<Box<serde_json::value::RawValue>>(text);
        assert!(Row::from_outside(Some(&raw(r#" {"a":[1,2]}"#).unwrap()), 0).is_ok());
        assert!(Row::from_outside(None, 2).is_ok());
        for bad in ["[1]", "\"x\"", "7", "null"] {
            assert!(Row::from_outside(Some(&raw(bad).unwrap()), 0).is_err(), "{bad}");
        }
        // Text that is not JSON never becomes a raw value to begin with.
        for bad in ["{", "{\"a\":1} x", ""] {
            assert!(raw(bad).is_err(), "{bad}");
        }
    }
}
