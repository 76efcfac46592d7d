//! Genesis changes: how a counter or a text field that a record does not have
//! yet comes into existence without two replicas creating two of them.
//!
//! Concurrent increments only add up when they increment the same counter, and
//! concurrent splices only interleave inside the same text object. If two
//! replicas each created the missing field themselves, automerge would hold two
//! competing objects: a conflict, with one replica's edits hidden. So the first
//! increment (or splice, or text put) of a missing field is preceded by a genesis
//! change that every replica derives identically from the field's name and kind:
//! same actor, sequence 1, no dependencies, time 0, one operation. Identical bytes
//! have an identical hash, so automerge keeps one copy however many replicas send
//! it, and every replica's edit lands in the same object.
//!
//! A genesis change travels as an op of its own whose op actor is
//! [`GENESIS_ACTOR`]; its automerge actor is that marker followed by the field's
//! kind and name. Peers accept such an op only when its change is exactly the one
//! they derive themselves, so nobody can write anything else under that actor.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, Change, ObjType, ROOT, ScalarValue};

use super::guarded;
use crate::model::{ActorId, check_field_name};

/// The op actor of every genesis op. Replica actors are random version-4 UUIDs;
/// these bytes have version nibble 7, so no replica can ever have them.
pub const GENESIS_ACTOR: ActorId = ActorId(*b"tidemark-genesis");

/// The kind of object a genesis change creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GenesisKind {
    /// A counter at 0.
    Counter,
    /// An empty text object.
    Text,
}

impl GenesisKind {
    fn tag(self) -> u8 {
        match self {
            GenesisKind::Counter => b'c',
            GenesisKind::Text => b't',
        }
    }
}

/// The genesis change of `field`: the same bytes on every replica, every run.
/// None only for a name automerge refuses as a map key.
pub(crate) fn genesis_change(field: &str, kind: GenesisKind) -> Option<Change> {
    let mut actor = GENESIS_ACTOR.0.to_vec();
    actor.push(kind.tag());
    actor.extend_from_slice(field.as_bytes());
    let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from(actor));
    match kind {
        GenesisKind::Counter => doc.put(ROOT, field, ScalarValue::counter(0)).ok()?,
        GenesisKind::Text => {
            doc.put_object(ROOT, field, ObjType::Text).ok()?;
        }
    }
    doc.commit_with(CommitOptions::default().with_time(0))?;
    doc.get_last_local_change()
}

/// Whether an automerge actor is a genesis change's: the marker, then kind and field.
/// (A replica's actor is exactly 16 bytes, so it never matches.)
pub(crate) fn is_genesis_actor(actor: &[u8]) -> bool {
    actor.len() > GENESIS_ACTOR.0.len() && actor.starts_with(&GENESIS_ACTOR.0)
}

/// Whether `change` is a genesis change tidemark derives: its actor names a kind
/// and a field, and its bytes are exactly that field's genesis change.
pub(crate) fn is_genesis(change: &Change) -> bool {
    let actor = change.actor_id().to_bytes();
    let Some(rest) = actor.strip_prefix(&GENESIS_ACTOR.0) else {
        return false;
    };
    let kind = match rest.first() {
        Some(b'c') => GenesisKind::Counter,
        Some(b't') => GenesisKind::Text,
        _ => return false,
    };
    let Ok(field) = std::str::from_utf8(&rest[1..]) else {
        return false;
    };
    // Only fields a record can have; and this runs on bytes from peers, so behind
    // the panic boundary like every other automerge call on foreign input.
    check_field_name(field).is_ok()
        && guarded("genesis change", || genesis_change(field, kind))
            .ok()
            .flatten()
            .is_some_and(|g| g.hash() == change.hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_genesis_change_is_the_same_every_time_and_differs_by_field_and_kind() {
        let a = genesis_change("visits", GenesisKind::Counter).unwrap();
        let b = genesis_change("visits", GenesisKind::Counter).unwrap();
        assert_eq!(a.raw_bytes(), b.raw_bytes());
        assert!(is_genesis(&a));
        let text = genesis_change("visits", GenesisKind::Text).unwrap();
        let other = genesis_change("calls", GenesisKind::Counter).unwrap();
        assert_ne!(a.hash(), text.hash());
        assert_ne!(a.hash(), other.hash());
        assert!(is_genesis(&text) && is_genesis(&other));
    }

    /// Every replica and server, of any build, must derive these exact bytes: a
    /// change here (say, from an automerge upgrade) splits the network in two.
    #[test]
    fn the_genesis_bytes_never_change() {
        let counter = genesis_change("visits", GenesisKind::Counter).unwrap();
        let text = genesis_change("note", GenesisKind::Text).unwrap();
        assert_eq!(
            hex::encode(counter.hash().0),
            "dd79918b1998ff7feb5fe61c2d546c5abf34260d556117875b2a0ab3e1766cc3"
        );
        assert_eq!(
            hex::encode(text.hash().0),
            "3b81f51be0c8856df3a46a75ebdca9b945021f360a004a9839d8bc7e06009c6f"
        );
    }

    #[test]
    fn a_change_under_the_genesis_actor_with_other_content_is_not_genesis() {
        let mut actor = GENESIS_ACTOR.0.to_vec();
        actor.extend_from_slice(b"cvisits");
        let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from(actor));
        doc.put(ROOT, "visits", ScalarValue::counter(1000)).unwrap();
        doc.commit_with(CommitOptions::default().with_time(0));
        let forged = doc.get_last_local_change().unwrap();
        assert!(!is_genesis(&forged));
        // A replica's own change is not genesis either.
        let mut own = AutoCommit::new().with_actor(automerge::ActorId::from(ActorId::random().0));
        own.put(ROOT, "visits", ScalarValue::counter(0)).unwrap();
        own.commit_with(CommitOptions::default().with_time(0));
        assert!(!is_genesis(&own.get_last_local_change().unwrap()));
    }
}
