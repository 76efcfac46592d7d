//! The tombstone: a record's delete is the reserved root field `_deleted`, so a
//! delete merges with concurrent edits. Any `true` among its concurrent values
//! reads as deleted (a delete wins over concurrent edits, an undelete included);
//! a later edit writes a fresh `false` over every value.

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc, ScalarValue, Value};

use super::{DELETED, RecordDoc};

impl RecordDoc {
    /// Whether the tombstone is set. A delete concurrent with an undelete (a put
    /// after another delete) leaves both values: the delete wins, as it does over
    /// any concurrent edit, until a later put writes over both.
    pub fn is_deleted(&self) -> bool {
        self.tombstone().0
    }

    /// Whether the tombstone holds a `true` and whether it holds a `false`
    /// among its concurrent values. Both at once is a delete that won over a
    /// concurrent undelete: listed by [`RecordDoc::conflicts`] as field `_deleted`.
    pub(crate) fn tombstone(&self) -> (bool, bool) {
        let Ok(all) = self.doc.get_all(ROOT, DELETED) else {
            return (false, false);
        };
        let is = |want: bool| all.iter().any(|(v, _)| is_bool(v, want));
        (is(true), is(false))
    }

    /// Brings a deleted record back (every edit does): a fresh `false` over every
    /// value of the tombstone. On a tombstone holding both values a plain put of
    /// `false` may write nothing new (automerge only removes the other values when
    /// the new one equals the winner's), and a delete concurrent with this edit
    /// would then win without a conflict to show for it; so a `true` goes first
    /// and the `false` over it, in this one change.
    pub(super) fn undelete(&mut self) -> Result<(), automerge::AutomergeError> {
        match self.tombstone() {
            (false, _) => {}
            (true, false) => self.doc.put(ROOT, DELETED, false)?,
            (true, true) => {
                self.doc.put(ROOT, DELETED, true)?;
                self.doc.put(ROOT, DELETED, false)?;
            }
        }
        Ok(())
    }

    /// Marks the record deleted (a tombstone; the fields stay for a later undelete).
    /// A record that already reads as deleted gets no op, unless its tombstone also
    /// holds a `false` (a delete that won over a concurrent undelete, listed by
    /// [`RecordDoc::conflicts`]): then this confirms the delete with a fresh `true`.
    pub fn delete(&mut self) {
        match self.tombstone() {
            (false, _) => self.doc.put(ROOT, DELETED, true).expect("root map put cannot fail"),
            // Already deleted, nothing concurrent to settle. Writing again would not
            // write a fresh true (automerge only removes the other values when the
            // new one equals the winner's), so it would change nothing anyway.
            (true, false) => {}
            // A delete that won over a concurrent undelete, confirmed: a false over
            // every value, then a true over that, in this one change. This is a
            // fresh delete that supersedes them all (a plain put of true would leave
            // the old true standing), so a concurrent undelete elsewhere loses to it
            // whatever the op order, as it would to any delete.
            (true, true) => {
                self.doc.put(ROOT, DELETED, false).expect("root map put cannot fail");
                self.doc.put(ROOT, DELETED, true).expect("root map put cannot fail");
            }
        }
    }
}

/// Whether a value is the boolean `want` (a tombstone value).
pub(super) fn is_bool(value: &Value<'_>, want: bool) -> bool {
    matches!(value, Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Boolean(b) if *b == want))
}
