//! `import`: list-format lines upserted in batched transactions. A bad line of
//! any kind stops the import with one error naming its line, what is wrong with
//! it, and which lines were applied.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Value};
use tidemark::replica::Edit;
use tidemark::{InvalidInput, Replica};

use crate::local::open_or_create;

/// One line of list format.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    fields: Map<String, Value>,
}

const LIST_FORMAT: &str = r#"a list-format line looks like {"id":"c1","fields":{"name":"Ada"}}"#;

pub fn import(store: &Path, collection: &str, file: Option<&Path>, batch: usize) -> Result<()> {
    // The input first: a missing file creates no store.
    let (mut reader, total): (Box<dyn BufRead>, Option<u64>) = match file {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::new(f)), size)
        }
        None => (Box::new(BufReader::new(std::io::stdin())), None),
    };
    let replica = open_or_create(store)?;
    let bar = crate::progress::bar(total, "importing");
    let mut pending = Pending::new(collection, batch);
    let mut bytes = Vec::new();
    let mut line_no = 0;
    loop {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| pending.stop(line_no + 1, format!("line {}: cannot read it ({e})", line_no + 1)))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        bar.inc(if total.is_some() { read as u64 } else { 1 });
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            pending.stop(
                line_no,
                format!(
                    "line {line_no}: not UTF-8 (byte {} of the line is not valid); list format is UTF-8 JSON",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| {
            pending.stop(
                line_no,
                format!(
                    "line {line_no}, column {}: {}; {LIST_FORMAT}",
                    e.column(),
                    without_position(&e)
                ),
            )
        })?;
        pending.push(line, line_no);
        if pending.edits.len() >= batch.max(1) {
            pending.commit(&replica)?;
        }
    }
    pending.commit(&replica)?;
    bar.finish_and_clear();
    out!("{}", serde_json::json!({ "imported": pending.imported }))?;
    Ok(())
}

/// The batch being gathered, and how many lines were applied before it.
struct Pending {
    collection: String,
    edits: Vec<Edit>,
    /// The file line of each edit.
    lines: Vec<usize>,
    imported: u64,
}

impl Pending {
    fn new(collection: &str, batch: usize) -> Pending {
        let capacity = batch.clamp(1, 10_000);
        Pending {
            collection: collection.to_string(),
            edits: Vec::with_capacity(capacity),
            lines: Vec::with_capacity(capacity),
            imported: 0,
        }
    }

    fn push(&mut self, line: Line, line_no: usize) {
        self.edits.push(Edit::Put {
            collection: self.collection.clone(),
            id: line.id,
            fields: line.fields,
        });
        self.lines.push(line_no);
    }

    /// The error that stops the import at line `at`: `why`, then which lines were
    /// not applied (the batch in hand and `at`) and how many were.
    fn stop(&self, at: usize, why: String) -> anyhow::Error {
        anyhow!("{why}; {}", self.not_imported(at))
    }

    fn not_imported(&self, last: usize) -> String {
        let first = self.lines.first().copied().unwrap_or(last);
        let before = self.imported;
        if first == last {
            format!("line {first} was not imported ({before} records before it were)")
        } else {
            format!("lines {first}–{last} were not imported ({before} records before them were)")
        }
    }

    /// Commits the batch in hand; a refused edit names its line in the file.
    fn commit(&mut self, replica: &Replica) -> Result<()> {
        let Some(&last) = self.lines.last() else {
            return Ok(());
        };
        let n = self.edits.len() as u64;
        match replica.apply_edits(std::mem::take(&mut self.edits)) {
            Ok(_) => {
                self.imported += n;
                self.lines.clear();
                Ok(())
            }
            Err(tidemark::Error::Invalid(InvalidInput::InBatch { edit, error })) => {
                let line = edit
                    .checked_sub(1)
                    .and_then(|i| self.lines.get(i))
                    .copied()
                    .unwrap_or(last);
                Err(self.stop(last, format!("line {line}: {error}")))
            }
            // A batch of one edit reports its error unwrapped.
            Err(tidemark::Error::Invalid(error)) if self.lines.len() == 1 => {
                Err(self.stop(last, format!("line {last}: {error}")))
            }
            Err(other) => Err(anyhow::Error::new(other).context(self.not_imported(last))),
        }
    }
}

/// serde_json's message without its " at line 1 column N" (always line 1 here).
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    }
}
