//! Ids and envelopes shared by every layer: names, actors, ops, bindings, packages.
//!
//! Nothing here touches automerge or storage; these are plain values with
//! validation and a stable binary encoding for ops.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{CorruptData, InvalidInput};

/// Longest space or user name, in bytes (the server's rule for account names).
pub const MAX_ACCOUNT_NAME: usize = 64;

/// The longest collection name, record id or field name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// What a client holds at the seq it pulls from, for the server to check its
/// history against: the op's id, and the mark the server's append gave that
/// op. A server restored from a backup keeps its epoch; one that lost the op
/// at that seq, or stored it there again over another history (its mark
/// changes), answers `history_changed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldAt {
    pub op: Option<OpId>,
    pub mark: Option<u64>,
}

impl From<Option<OpId>> for HeldAt {
    fn from(op: Option<OpId>) -> Self {
        HeldAt { op, mark: None }
    }
}

/// Reads an unsigned 64-bit integer from JSON, also when it is spelled as a
/// whole float (`5.0`, `5e3`): JSON Schema counts those as integers, and a
/// client that writes numbers as doubles sends them. A float is exact only up
/// to 2^53, so a larger one is refused rather than rounded.
pub(crate) fn whole_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number from 0 to 2^64 - 1")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("{v} is negative: expected a whole number from 0 to 2^64 - 1")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            const PAST: f64 = 18_446_744_073_709_551_616.0; // 2^64
            if v.fract() == 0.0 && (0.0..=EXACT).contains(&v) {
                Ok(v as u64)
            } else if v >= PAST {
                Err(E::custom(format!(
                    "{v} is past 2^64 - 1, the largest whole number taken here"
                )))
            } else if v > EXACT {
                Err(E::custom(format!(
                    "{v} is written as a float, exact only up to 2^53: write it as an integer, without a fraction or exponent"
                )))
            } else {
                Err(E::custom(format!("{v} is not a whole number from 0 to 2^64 - 1")))
            }
        }
    }
    d.deserialize_any(Whole)
}

fn check_name(what: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::Empty { what });
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(InvalidInput::TooLong {
            what,
            value: value.chars().take(40).collect::<String>() + "…",
            len: value.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacter {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Checks a field name: a valid name that does not start with the reserved `_`.
pub fn check_field_name(field: &str) -> Result<(), InvalidInput> {
    check_name("field name", field)?;
    if field.starts_with('_') {
        return Err(InvalidInput::ReservedField {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// `value` in Unicode NFC; no copy when it is already (the common case).
pub fn nfc(value: String) -> String {
    if is_nfc(&value) {
        value
    } else {
        use unicode_normalization::UnicodeNormalization;
        value.nfc().collect()
    }
}

/// Whether `value` is in Unicode NFC.
pub fn is_nfc(value: &str) -> bool {
    match unicode_normalization::is_nfc_quick(value.chars()) {
        unicode_normalization::IsNormalized::Yes => true,
        unicode_normalization::IsNormalized::No => false,
        unicode_normalization::IsNormalized::Maybe => unicode_normalization::is_nfc(value),
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A name a person or an application gives: checked, and put in Unicode
            /// NFC, so that `e\u{301}` and `\u{e9}` name the same thing.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
                let value = nfc(value.into());
                check_name($what, &value)?;
                Ok($name(value))
            }
            /// A name as another peer wrote it (a pulled op, a snapshot, the log):
            /// checked, but kept byte for byte, so that every replica files the op
            /// under the same key as the server does.
            pub fn exact(value: impl Into<String>) -> Result<Self, InvalidInput> {
                let value = value.into();
                check_name($what, &value)?;
                Ok($name(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Whether the name is in Unicode NFC, as every name [`Self::new`] makes is.
            pub fn is_nfc(&self) -> bool {
                is_nfc(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::exact(s).map_err(serde::de::Error::custom)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidInput;
            fn try_from(s: &str) -> Result<Self, InvalidInput> {
                $name::new(s)
            }
        }
    };
}

name_type!(
    /// The name of a collection (`contacts`, `notes`).
    Collection,
    "collection name"
);
name_type!(
    /// The id of a record inside its collection.
    RecordId,
    "record id"
);

/// The automerge actor of one replica (16 random bytes), shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub [u8; 16]);

impl ActorId {
    pub fn random() -> Self {
        ActorId(*random_uuid().as_bytes())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<Self, CorruptData> {
        let bytes = hex::decode(s).map_err(|e| CorruptData::new("actor id", e))?;
        Self::from_slice(&bytes)
    }
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CorruptData> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| CorruptData::new("actor id", format!("{} bytes, expected 16", bytes.len())))?;
        Ok(ActorId(arr))
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({})", self.to_hex())
    }
}
impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl Serialize for ActorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ActorId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The id of one op: a UUID v7, so ids sort roughly by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct OpId(pub uuid::Uuid);

impl OpId {
    /// A new id, time-ordered by the system clock (clamped: see [`unix_ms`]);
    /// ids made in one process increase even when the clock goes back.
    pub fn new() -> Self {
        if let Some((ms, bits)) = id_source::now_ms().zip(id_source::bits()) {
            let random: [u8; 10] = bits.to_be_bytes()[..10].try_into().expect("10 bytes");
            return OpId(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid());
        }
        static CONTEXT: std::sync::Mutex<uuid::ContextV7> = std::sync::Mutex::new(uuid::ContextV7::new());
        Self::v7(&CONTEXT, now_ms())
    }
    /// A v7 id for `ms` milliseconds since the Unix epoch (1 to [`MAX_TIME_MS`]),
    /// or for the latest time `context` gave out when that is later.
    fn v7(context: &std::sync::Mutex<uuid::ContextV7>, ms: u64) -> Self {
        // Not 0: the context seeds its random counter only once the millisecond
        // moves past 0, and without that seed ids of a clock stuck at 1970 would
        // hold 32 random bits instead of 74.
        let ms = ms.clamp(1, MAX_TIME_MS);
        let time = uuid::Timestamp::from_unix(context, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        OpId(uuid::Uuid::new_v7(time))
    }
    /// The id under which a change known only from a snapshot document is
    /// pushed again after the server lost data: derived from the record and
    /// the change's hash, so that every replica holding that document pushes
    /// it under the same id and the server stores it once. The record is part
    /// of it because a genesis change is the same in every record. A version-4
    /// id: 122 bits of a SHA-256.
    pub fn of_change(collection: &Collection, record: &RecordId, hash: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [collection.as_str().as_bytes(), record.as_str().as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(hash);
        let bytes: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
        OpId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }
    pub fn from_u128(v: u128) -> Self {
        OpId(uuid::Uuid::from_u128(v))
    }
}

impl Default for OpId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One edit of one record: an automerge change plus its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub id: OpId,
    pub actor: ActorId,
    pub collection: Collection,
    pub record: RecordId,
    /// Milliseconds since the Unix epoch when the edit was made (advisory).
    pub time_ms: u64,
    /// The automerge change bytes.
    pub change: Vec<u8>,
}

/// Version of [`Op::encode`]'s layout.
const OP_CODEC_V1: u8 = 1;

impl Op {
    /// Stable binary layout (used in the redb log and server stores):
    /// `[1u8][op id 16][actor 16][time_ms u64 LE][coll len u16 LE][coll][id len u16 LE][id][change…]`.
    pub fn encode(&self) -> Vec<u8> {
        let c = self.collection.as_str().as_bytes();
        let r = self.record.as_str().as_bytes();
        let mut out = Vec::with_capacity(1 + 16 + 16 + 8 + 4 + c.len() + r.len() + self.change.len());
        out.push(OP_CODEC_V1);
        out.extend_from_slice(self.id.0.as_bytes());
        out.extend_from_slice(&self.actor.0);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(&(r.len() as u16).to_le_bytes());
        out.extend_from_slice(r);
        out.extend_from_slice(&self.change);
        out
    }

    /// Decodes [`Op::encode`]'s layout; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Op, CorruptData> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.take(1)?[0];
        if version != OP_CODEC_V1 {
            return Err(CorruptData::new("op", format!("unknown op layout version {version}")));
        }
        let id = OpId(uuid::Uuid::from_slice(r.take(16)?).map_err(|e| CorruptData::new("op id", e))?);
        let actor = ActorId::from_slice(r.take(16)?)?;
        let time_ms = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let collection = r.name()?;
        let record = r.name()?;
        let collection = Collection::exact(collection).map_err(|e| CorruptData::new("op collection", e))?;
        let record = RecordId::exact(record).map_err(|e| CorruptData::new("op record id", e))?;
        Ok(Op {
            id,
            actor,
            collection,
            record,
            time_ms,
            change: bytes[r.at..].to_vec(),
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptData> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| CorruptData::new("op", "truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn name(&mut self) -> Result<String, CorruptData> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|e| CorruptData::new("op name", e))
    }
}

/// The type of a package field, which decides how it merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Bool,
    Datetime,
    Json,
    Text,
    Counter,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Datetime => "datetime",
            FieldType::Json => "json",
            FieldType::Text => "text",
            FieldType::Counter => "counter",
        }
    }
}

/// The fields of one collection in a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectionSchema {
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::fields))]
    pub fields: BTreeMap<String, FieldType>,
}

/// A space's customization: collections, their fields and types, a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Replicas install a package whose version differs from theirs; a space's version only moves forward.
    #[serde(deserialize_with = "whole_u64")]
    pub version: u64,
    /// Keyed by name in Unicode NFC, the form records are filed under.
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::collections))]
    #[serde(deserialize_with = "nfc_collections")]
    pub collections: BTreeMap<String, CollectionSchema>,
}

/// A package's collections with their names in NFC; two names that differ only
/// in their normal form are refused, not merged.
fn nfc_collections<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, CollectionSchema>, D::Error> {
    let raw = BTreeMap::<String, CollectionSchema>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (name, schema) in raw {
        let normal = nfc(name.clone());
        if out.insert(normal.clone(), schema).is_some() {
            return Err(serde::de::Error::custom(format!(
                "collections {name:?} and {normal:?} differ only in their Unicode normal form: keep one"
            )));
        }
    }
    Ok(out)
}

impl Package {
    /// Parses and checks a package from JSON.
    pub fn from_json(text: &str) -> Result<Package, InvalidInput> {
        let package: Package = serde_json::from_str(text).map_err(|e| {
            InvalidInput::Package(format!(
                "{e}; expected {{\"version\": 1, \"collections\": {{\"contacts\": {{\"fields\": {{\"name\": \"string\"}}}}}}}} with types string, number, bool, datetime, json, text, counter"
            ))
        })?;
        package.check()?;
        Ok(package)
    }

    /// Checks every collection and field name.
    pub fn check(&self) -> Result<(), InvalidInput> {
        for (name, schema) in &self.collections {
            check_name("collection name", name).map_err(|e| InvalidInput::Package(e.to_string()))?;
            for field in schema.fields.keys() {
                check_field_name(field).map_err(|e| InvalidInput::Package(format!("collection {name:?}: {e}")))?;
            }
        }
        Ok(())
    }

    /// The schema of a collection, or a typed error naming the known ones.
    pub fn collection(&self, collection: &str) -> Result<&CollectionSchema, InvalidInput> {
        self.collections
            .get(collection)
            .ok_or_else(|| InvalidInput::UnknownCollection {
                collection: collection.to_string(),
                version: self.version,
                known: self.collections.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

impl CollectionSchema {
    /// The type of a field, or a typed error naming the known ones.
    pub fn field(&self, collection: &str, field: &str) -> Result<FieldType, InvalidInput> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| InvalidInput::UnknownField {
                collection: collection.to_string(),
                field: field.to_string(),
                known: self.fields.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

/// The latest time an op carries: a v7 op id holds 48 bits of milliseconds
/// (the year 10889).
pub const MAX_TIME_MS: u64 = (1 << 48) - 1;

/// Milliseconds since the Unix epoch, now (see [`unix_ms`]; a logical clock
/// when the thread's ids are seeded).
pub fn now_ms() -> u64 {
    if let Some(ms) = id_source::now_ms() {
        return ms;
    }
    unix_ms(std::time::SystemTime::now())
}

/// Milliseconds since the Unix epoch of `time`, clamped to `0..=MAX_TIME_MS`.
/// Times in tidemark are advisory (merges never read them), so a clock set
/// before 1970 or past the year 10889 gives the nearest time an op can carry
/// instead of a failure.
pub fn unix_ms(time: std::time::SystemTime) -> u64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => u64::try_from(since.as_millis()).unwrap_or(u64::MAX).min(MAX_TIME_MS),
        Err(_) => 0,
    }
}

mod binding;
mod id_source;
mod position;

pub use binding::Binding;
pub use position::{LogPos, Seq};

/// Makes this thread's op ids, actor ids, server epochs and change times a
/// function of `seed` (None: random ids and the clock again), so that a
/// simulation replays one run exactly. Not for applications: ids from two
/// threads seeded alike collide.
#[doc(hidden)]
pub fn seed_ids_for_this_thread(seed: Option<u64>) {
    id_source::seed(seed);
}

/// A random UUID (v4), or one from the thread's seeded sequence.
pub(crate) fn random_uuid() -> uuid::Uuid {
    match id_source::bits() {
        Some(bits) => uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid(),
        None => uuid::Uuid::new_v4(),
    }
}

#[cfg(test)]
mod tests;
