//! Reading a record document: its fields for the view, its conflicts, its state.

use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef};
use serde_json::{Map, Value as Json};

use super::genesis::is_genesis_actor;
use super::tombstone::is_bool;
use super::values::{scalar_ref_to_json, scalar_to_json};
use super::{ConflictValue, DELETED, FieldConflict, Fields, GENESIS_ACTOR, RecordDoc, RecordState};

impl RecordDoc {
    /// Everything the view needs, read in one pass over the root map: the
    /// fields, whether the record is deleted or was never written, and how many
    /// fields hold concurrent values that differ. `fields()` plus `conflicts()` read every key
    /// twice more (`get` and `get_all`); this is the hot path of every merge.
    pub fn state(&self) -> RecordState {
        let mut state = RecordState {
            fields: Map::new(),
            deleted: false,
            empty: self.is_empty(),
            conflicted_fields: 0,
        };
        for item in self.doc.map_range(ROOT, ..) {
            if item.key.starts_with('_') {
                if item.key == DELETED {
                    // Concurrent values: any delete among them wins (see `is_deleted`),
                    // and a won undelete is a conflict to show (see `conflicts`).
                    if item.conflict {
                        let (deleted, live) = self.tombstone();
                        state.deleted = deleted;
                        state.conflicted_fields += u32::from(deleted && live);
                    } else {
                        state.deleted = matches!(item.value, ValueRef::Scalar(ScalarValueRef::Boolean(true)));
                    }
                }
                continue;
            }
            if item.conflict && self.values_differ(&self.doc.get_all(ROOT, item.key.as_ref()).unwrap_or_default()) {
                state.conflicted_fields += 1;
            }
            let value = match item.value {
                ValueRef::Object(ObjType::Text) => Json::String(self.doc.text(item.id()).unwrap_or_default()),
                ValueRef::Object(_) => Json::Null,
                ValueRef::Scalar(s) => scalar_ref_to_json(&s),
            };
            state.fields.insert(item.key.into_owned(), value);
        }
        state
    }

    /// The record's fields as JSON (reserved keys left out).
    pub fn fields(&self) -> Fields {
        let mut out = Map::new();
        for key in self.doc.keys(ROOT) {
            if key.starts_with('_') {
                continue;
            }
            if let Ok(Some((value, id))) = self.doc.get(ROOT, key.as_str()) {
                out.insert(key, self.to_json(&value, &id));
            }
        }
        out
    }

    /// Every field with concurrent values that differ. First, as field
    /// `_deleted`, a delete that won over a concurrent undelete (values `true`,
    /// then `false`): the record reads as deleted until a put brings it back
    /// (or a delete confirms it), and this is what tells the person whose
    /// undelete or edit vanished why.
    pub fn conflicts(&self) -> Vec<FieldConflict> {
        let mut out = Vec::new();
        if self.tombstone() == (true, true) {
            out.push(self.tombstone_conflict());
        }
        for key in self.doc.keys(ROOT).filter(|k| !k.starts_with('_')) {
            let all = match self.doc.get_all(ROOT, key.as_str()) {
                Ok(all) if self.values_differ(&all) => all,
                _ => continue,
            };
            // get() returns the winner; list it first so people see what the view shows.
            let winner = self.doc.get(ROOT, key.as_str()).ok().flatten().map(|(_, id)| id);
            let mut values: Vec<ConflictValue> = Vec::new();
            let mut rest = Vec::new();
            for (value, id) in &all {
                let entry = self.conflict_value(value, id);
                if Some(id) == winner.as_ref() {
                    values.push(entry);
                } else {
                    rest.push(entry);
                }
            }
            values.extend(rest);
            out.push(FieldConflict { field: key, values });
        }
        out
    }

    /// Whether a key's concurrent values (from `get_all`) are a conflict to list. Equal register
    /// values or equal texts (two replicas that imported the same file, or typed
    /// the same fix) leave nothing to choose between and nothing lost; once they
    /// differ (an edit reached only one of the competing texts) they are listed.
    /// Competing counters always are: equal totals can hide increments that went
    /// to the counter the view does not show.
    fn values_differ(&self, all: &[(Value<'_>, ObjId)]) -> bool {
        #[derive(PartialEq)]
        enum Reading {
            Text(String),
            Scalar(ScalarValue),
        }
        // None: a counter or another object, never equal to anything.
        let reading = |(value, id): &(Value<'_>, ObjId)| match value {
            Value::Object(ObjType::Text) => Some(Reading::Text(self.doc.text(id).unwrap_or_default())),
            Value::Scalar(s) if !matches!(s.as_ref(), ScalarValue::Counter(_)) => {
                Some(Reading::Scalar(s.clone().into_owned()))
            }
            _ => None,
        };
        let Some((first, rest)) = all.split_first() else {
            return false;
        };
        let first = reading(first);
        !rest.is_empty() && (first.is_none() || rest.iter().any(|v| reading(v) != first))
    }

    /// The tombstone's values, the deletes (what the view shows) first.
    fn tombstone_conflict(&self) -> FieldConflict {
        let all = self.doc.get_all(ROOT, DELETED).unwrap_or_default();
        let mut values: Vec<(bool, ConflictValue)> = all
            .iter()
            .map(|(value, id)| (is_bool(value, true), self.conflict_value(value, id)))
            .collect();
        values.sort_by_key(|(deleted, _)| !deleted);
        FieldConflict {
            field: DELETED.to_string(),
            values: values.into_iter().map(|(_, v)| v).collect(),
        }
    }

    fn conflict_value(&self, value: &Value<'_>, id: &ObjId) -> ConflictValue {
        ConflictValue {
            actor: match id {
                // Shown as the op actor its genesis op travels under.
                ObjId::Id(_, actor, _) if is_genesis_actor(actor.to_bytes()) => GENESIS_ACTOR.to_hex(),
                ObjId::Id(_, actor, _) => actor.to_hex_string(),
                ObjId::Root => String::new(),
            },
            value: self.to_json(value, id),
        }
    }

    fn to_json(&self, value: &Value<'_>, id: &ObjId) -> Json {
        match value {
            Value::Object(ObjType::Text) => Json::String(self.doc.text(id).unwrap_or_default()),
            // Validation only lets text objects in; anything else shows as null.
            Value::Object(_) => Json::Null,
            Value::Scalar(s) => scalar_to_json(s),
        }
    }
}
