//! What a crash test wrote and what was acknowledged to the person.
//!
//! Every record has one writer, and each write of it is `{"name": "WRITER-N",
//! "age": N}` with N growing with every command of that writer. A write is
//! attempted when its command starts and acknowledged when it ends with
//! success (a `put` or `import` that exited 0; a library `put` that returned).
//! A killed command may have committed or not; so a record must end with an
//! attempted value at or after its last acknowledged one, both fields from the
//! same write.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

#[derive(Debug, Default)]
struct Writes {
    writer: String,
    attempted: BTreeSet<u64>,
    acknowledged: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    records: BTreeMap<String, Writes>,
    acknowledged: usize,
}

/// The fields of write `n` by `writer`.
pub fn fields(writer: &str, n: u64) -> Value {
    json!({"name": format!("{writer}-{n}"), "age": n})
}

impl Ledger {
    pub fn attempt(&mut self, writer: &str, id: &str, n: u64) {
        let writes = self.records.entry(id.to_string()).or_default();
        assert!(
            writes.writer.is_empty() || writes.writer == writer,
            "record {id} has two writers"
        );
        writes.writer = writer.to_string();
        writes.attempted.insert(n);
    }

    pub fn acknowledge(&mut self, id: &str, n: u64) {
        let writes = self
            .records
            .get_mut(id)
            .unwrap_or_else(|| panic!("acknowledged {id} = {n} without an attempt"));
        assert!(
            writes.attempted.contains(&n),
            "acknowledged {id} = {n} without an attempt"
        );
        writes.acknowledged = writes.acknowledged.max(Some(n));
        self.acknowledged += 1;
    }

    /// Acknowledged writes so far (a record written twice counts twice).
    pub fn acknowledged(&self) -> usize {
        self.acknowledged
    }

    /// What is wrong with `view` (record id → fields): an acknowledged write
    /// lost or overwritten by an older one, a value nobody wrote, fields of two
    /// writes mixed, a record the workload never wrote.
    pub fn problems(&self, view: &BTreeMap<String, Map<String, Value>>) -> Vec<String> {
        let mut problems = Vec::new();
        for (id, writes) in &self.records {
            let Some(found) = view.get(id) else {
                if let Some(n) = writes.acknowledged {
                    problems.push(format!("{id}: acknowledged write {n} is lost (the record is missing)"));
                }
                continue;
            };
            let Some(n) = found.get("age").and_then(Value::as_u64) else {
                problems.push(format!("{id}: no age in {found:?}"));
                continue;
            };
            if Value::Object(found.clone()) != fields(&writes.writer, n) {
                problems.push(format!("{id}: {found:?} is not one write of {}", writes.writer));
            }
            if !writes.attempted.contains(&n) {
                problems.push(format!("{id}: value {n} was never written"));
            }
            if let Some(acked) = writes.acknowledged.filter(|acked| *acked > n) {
                problems.push(format!("{id}: acknowledged write {acked} is lost under the older {n}"));
            }
        }
        for id in view.keys().filter(|id| !self.records.contains_key(*id)) {
            problems.push(format!("{id}: a record the workload never wrote"));
        }
        problems
    }
}
