//! Rebasing local edits: what one change did to a record, replayed as a new
//! change on top of another history.
//!
//! A replica needs this when the server will not take a change as it is: a
//! change refused for good leaves the record's history, and the local changes
//! made after it are written again (by the same or a fresh actor) on top of what
//! the server holds. A change is replayed by its effect, field by field, read
//! from the document before and after it: registers get the value it wrote,
//! counters the amount it added, texts the characters it inserted and removed
//! (anchored to the characters around them, which keep their ids in every
//! history that holds them), the tombstone the state it set.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::change::decode_stored_raw;
use super::values::scalar_to_json;
use super::{ChangeHeader, DELETED, Fields, RecordDoc, guarded};
use crate::error::CorruptData;
use crate::model::ActorId;

/// What one change did to a record, for a person and for a retry: the values it
/// wrote (a text as it read afterwards, `null` for a removed field), what it
/// added to counters, and whether it deleted or brought back the record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EditSummary {
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub set: Fields,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub increments: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl EditSummary {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.increments.is_empty() && self.deleted.is_none()
    }
}

/// The hash of a stored change (its header only; the change is not applied).
pub fn change_hash(bytes: &[u8]) -> Result<[u8; 32], CorruptData> {
    Ok(decode_stored_raw(bytes)?.hash().0)
}

/// What happened at one root key between two states of a record.
enum KeyEffect {
    Unchanged,
    Removed,
    /// The winner is a scalar register written by the change.
    Register(ScalarValue),
    /// The same counter object moved by this much.
    Counted(i64),
    /// A new counter object with this value.
    NewCounter(i64),
    /// The same text object, edited in place.
    TextEdited(ObjId),
    /// A new text object with this content.
    NewText(String),
}

impl RecordDoc {
    /// The actor this document writes as, when it is a replica's.
    pub fn actor(&self) -> Option<ActorId> {
        ActorId::from_slice(self.doc.get_actor().to_bytes()).ok()
    }

    /// A copy of this document that writes as `actor`.
    pub fn fork_as(&mut self, actor: ActorId) -> RecordDoc {
        let doc = guarded("fork", || self.doc.fork()).unwrap_or_default();
        RecordDoc::wrap(doc, actor)
    }

    /// The change headers of this document, dependencies first.
    pub fn change_headers(&mut self) -> Result<Vec<ChangeHeader>, CorruptData> {
        let changes = guarded("reading changes", || self.doc.get_changes(&[]))?;
        Ok(changes.iter().map(ChangeHeader::of_raw).collect())
    }

    /// A document of this one's changes except those in `drop`, written as
    /// `actor`. Every change that depends on a dropped one must be dropped too.
    pub fn keeping_all_but(&mut self, drop: &HashSet<[u8; 32]>, actor: ActorId) -> Result<RecordDoc, CorruptData> {
        let changes = guarded("reading changes", || self.doc.get_changes(&[]))?;
        let kept: Vec<_> = changes.into_iter().filter(|c| !drop.contains(&c.hash().0)).collect();
        let mut doc = RecordDoc::new(actor);
        if !kept.is_empty() {
            doc.apply_raw(kept)?;
        }
        Ok(doc)
    }

    /// This document as it was with exactly the changes `heads` reach.
    pub fn at(&mut self, heads: &[[u8; 32]], actor: ActorId) -> Result<RecordDoc, CorruptData> {
        let heads: Vec<automerge::ChangeHash> = heads.iter().map(|h| automerge::ChangeHash(*h)).collect();
        let doc = guarded("forking at heads", || self.doc.fork_at(&heads))?
            .map_err(|e| CorruptData::new("forking at heads", e))?;
        Ok(RecordDoc::wrap(doc, actor))
    }

    /// Applies change bytes this program stored itself.
    pub fn apply_stored(&mut self, bytes: &[u8]) -> Result<(), CorruptData> {
        let change = decode_stored_raw(bytes)?;
        self.apply_raw(vec![change])
    }

    /// A document with every change of this one except those in `drop`, written
    /// as `actor`. A dropped change that a kept one depends on is kept after all
    /// (someone else holds it too, e.g. a genesis change): the second value is
    /// the set of hashes that were really left out.
    pub fn without(
        &mut self,
        drop: &HashSet<[u8; 32]>,
        actor: ActorId,
    ) -> Result<(RecordDoc, HashSet<[u8; 32]>), CorruptData> {
        let changes = guarded("reading changes", || self.doc.get_changes(&[]))?;
        let mut left_out: HashSet<[u8; 32]> = changes
            .iter()
            .map(|c| c.hash().0)
            .filter(|h| drop.contains(h))
            .collect();
        // A kept change that depends on a left-out one brings it back, transitively.
        loop {
            let mut needed = Vec::new();
            for change in &changes {
                if left_out.contains(&change.hash().0) {
                    continue;
                }
                needed.extend(change.deps().iter().map(|d| d.0).filter(|d| left_out.contains(d)));
            }
            if needed.is_empty() {
                break;
            }
            for hash in needed {
                left_out.remove(&hash);
            }
        }
        let kept: Vec<_> = changes
            .into_iter()
            .filter(|c| !left_out.contains(&c.hash().0))
            .collect();
        let mut doc = RecordDoc::new(actor);
        if !kept.is_empty() {
            doc.apply_raw(kept)?;
        }
        Ok((doc, left_out))
    }

    /// What `after` changed relative to `before` (two states of one history), as
    /// values a person can read and a retry can write again.
    pub fn summarize(before: &RecordDoc, after: &RecordDoc) -> EditSummary {
        let mut summary = EditSummary::default();
        for key in changed_keys(before, after) {
            match key_effect(before, after, &key) {
                KeyEffect::Unchanged => {}
                KeyEffect::Removed => {
                    summary.set.insert(key, Json::Null);
                }
                KeyEffect::Register(v) => {
                    summary.set.insert(key, scalar_to_json(&v));
                }
                KeyEffect::Counted(by) | KeyEffect::NewCounter(by) => {
                    summary.increments.insert(key, by);
                }
                KeyEffect::TextEdited(id) => {
                    summary
                        .set
                        .insert(key, Json::String(after.doc.text(&id).unwrap_or_default()));
                }
                KeyEffect::NewText(text) => {
                    summary.set.insert(key, Json::String(text));
                }
            }
        }
        if tombstone_changed(before, after) {
            summary.deleted = Some(after.is_deleted());
        }
        summary
    }

    /// Writes into this document (uncommitted) what `after` changed relative to
    /// `before`. `ids` maps text characters `after`'s history inserted to the ids
    /// their copies got here, across the replays of one rebase.
    pub fn replay(
        &mut self,
        before: &RecordDoc,
        after: &RecordDoc,
        ids: &mut HashMap<String, String>,
    ) -> Result<(), CorruptData> {
        let failed = |e: automerge::AutomergeError| CorruptData::new("replaying an edit", e);
        for key in changed_keys(before, after) {
            match key_effect(before, after, &key) {
                KeyEffect::Unchanged => {}
                KeyEffect::Removed => {
                    if self.doc.get(ROOT, key.as_str()).map_err(failed)?.is_some() {
                        self.doc.delete(ROOT, key.as_str()).map_err(failed)?;
                    }
                }
                KeyEffect::Register(v) => self.doc.put(ROOT, key.as_str(), v).map_err(failed)?,
                KeyEffect::Counted(by) => match self.doc.get(ROOT, key.as_str()).map_err(failed)? {
                    Some((Value::Scalar(v), _)) if matches!(v.as_ref(), ScalarValue::Counter(_)) => {
                        if by != 0 {
                            self.doc.increment(ROOT, key.as_str(), by).map_err(failed)?;
                        }
                    }
                    _ => self
                        .doc
                        .put(ROOT, key.as_str(), ScalarValue::counter(by))
                        .map_err(failed)?,
                },
                KeyEffect::NewCounter(value) => self
                    .doc
                    .put(ROOT, key.as_str(), ScalarValue::counter(value))
                    .map_err(failed)?,
                KeyEffect::TextEdited(id) => self.replay_text(&key, before, after, &id, ids).map_err(failed)?,
                KeyEffect::NewText(text) => {
                    let obj = self.doc.put_object(ROOT, key.as_str(), ObjType::Text).map_err(failed)?;
                    self.doc.splice_text(&obj, 0, 0, &text).map_err(failed)?;
                }
            }
        }
        if tombstone_changed(before, after) {
            if after.is_deleted() {
                self.delete();
            } else {
                self.undelete().map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Replays the inserts and deletes of one text object. Characters keep their
    /// ids in every history that holds them; one that only `after`'s history has
    /// (an earlier replayed insert) is found through `ids`. An insert goes after
    /// the nearest character before it that this document still has.
    fn replay_text(
        &mut self,
        key: &str,
        before: &RecordDoc,
        after: &RecordDoc,
        obj: &ObjId,
        ids: &mut HashMap<String, String>,
    ) -> Result<(), automerge::AutomergeError> {
        let here = match self.doc.import(&obj.to_string()) {
            Ok((id, ObjType::Text)) => id,
            _ => match self.doc.get(ROOT, key)? {
                Some((Value::Object(ObjType::Text), id)) => id,
                // The text object is gone here: write the text as it reads after the edit.
                _ => {
                    let text = after.doc.text(obj)?;
                    let id = self.doc.put_object(ROOT, key, ObjType::Text)?;
                    self.doc.splice_text(&id, 0, 0, &text)?;
                    return Ok(());
                }
            },
        };
        let old = elements(&before.doc, obj);
        let new = elements(&after.doc, obj);
        let old_ids: HashSet<&str> = old.iter().map(|(id, _)| id.as_str()).collect();
        let new_ids: HashSet<&str> = new.iter().map(|(id, _)| id.as_str()).collect();

        // Deletes first, from the end, so earlier indexes stay valid.
        let removed: HashSet<String> = old
            .iter()
            .filter(|(id, _)| !new_ids.contains(id.as_str()))
            .map(|(id, _)| ids.get(id).cloned().unwrap_or_else(|| id.clone()))
            .collect();
        if !removed.is_empty() {
            let current = elements(&self.doc, &here);
            for (index, (id, _)) in current.iter().enumerate().rev() {
                if removed.contains(id) {
                    self.doc.splice_text(&here, index, 1, "")?;
                }
            }
        }

        // Inserts: runs of characters `before` lacks, each after its anchor.
        let mut at = 0;
        while at < new.len() {
            if old_ids.contains(new[at].0.as_str()) {
                at += 1;
                continue;
            }
            let start = at;
            while at < new.len() && !old_ids.contains(new[at].0.as_str()) {
                at += 1;
            }
            let run = &new[start..at];
            let current = elements(&self.doc, &here);
            let position: HashMap<&str, usize> = current
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (id.as_str(), i))
                .collect();
            let index = new[..start]
                .iter()
                .rev()
                .find_map(|(id, _)| {
                    let mapped = ids.get(id).map(String::as_str).unwrap_or(id.as_str());
                    position.get(mapped).map(|i| i + 1)
                })
                .unwrap_or(0);
            let text: String = run.iter().map(|(_, s)| s.as_str()).collect();
            self.doc.splice_text(&here, index, 0, &text)?;
            let inserted = elements(&self.doc, &here);
            for ((old_id, _), (new_id, _)) in run.iter().zip(inserted.iter().skip(index)) {
                ids.insert(old_id.clone(), new_id.clone());
            }
        }
        Ok(())
    }
}

/// The characters of a text object with their ids, in order.
fn elements(doc: &automerge::AutoCommit, obj: &ObjId) -> Vec<(String, String)> {
    doc.list_range(obj, ..)
        .map(|item| {
            let text = match &item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => s.to_string(),
                _ => String::new(),
            };
            (item.id().to_string(), text)
        })
        .collect()
}

/// Root keys (tombstone aside) whose values differ between the two states.
fn changed_keys(before: &RecordDoc, after: &RecordDoc) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = before.doc.keys(ROOT).collect();
    keys.extend(after.doc.keys(ROOT));
    keys.remove(DELETED);
    keys
}

fn tombstone_changed(before: &RecordDoc, after: &RecordDoc) -> bool {
    let ids = |doc: &RecordDoc| -> Vec<String> {
        doc.doc
            .get_all(ROOT, DELETED)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, id)| id.to_string())
            .collect()
    };
    ids(before) != ids(after)
}

fn key_effect(before: &RecordDoc, after: &RecordDoc, key: &str) -> KeyEffect {
    let old = before.doc.get_all(ROOT, key).unwrap_or_default();
    let new = after.doc.get_all(ROOT, key).unwrap_or_default();
    let same_ops = old.len() == new.len() && old.iter().zip(&new).all(|((_, a), (_, b))| a == b);
    let Some((value, id)) = after.doc.get(ROOT, key).ok().flatten() else {
        return if old.is_empty() {
            KeyEffect::Unchanged
        } else {
            KeyEffect::Removed
        };
    };
    let counter = |v: &Value<'_>| match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Counter(c) => Some(i64::from(c)),
            _ => None,
        },
        _ => None,
    };
    match &value {
        Value::Object(ObjType::Text) => {
            if same_ops || old.iter().any(|(_, o)| o == &id) {
                let text = |doc: &RecordDoc| doc.doc.text(&id).unwrap_or_default();
                if text(before) == text(after) && elements(&before.doc, &id) == elements(&after.doc, &id) {
                    KeyEffect::Unchanged
                } else {
                    KeyEffect::TextEdited(id)
                }
            } else {
                KeyEffect::NewText(after.doc.text(&id).unwrap_or_default())
            }
        }
        Value::Object(_) => KeyEffect::Unchanged,
        Value::Scalar(s) => match counter(&value) {
            Some(now) => {
                let was = old.iter().find(|(_, o)| o == &id).and_then(|(v, _)| counter(v));
                match was {
                    Some(was) if now == was && same_ops => KeyEffect::Unchanged,
                    Some(was) => KeyEffect::Counted(now.wrapping_sub(was)),
                    None => KeyEffect::NewCounter(now),
                }
            }
            None if same_ops => KeyEffect::Unchanged,
            None => KeyEffect::Register(s.as_ref().clone()),
        },
    }
}
