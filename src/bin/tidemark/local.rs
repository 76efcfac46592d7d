//! The local half of the CLI: edits and reads on the store, no server involved.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use tidemark::replica::Edit;
use tidemark::{InvalidInput, Replica};

pub fn open(store: &Path) -> Result<Replica> {
    Replica::open_shared(store).with_context(|| format!("opening store {}", store.display()))
}

/// Parses `FIELD=VALUE` pairs; VALUE is JSON if it parses, else a plain string.
fn parse_fields(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut fields = Map::new();
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            bail!("{pair:?} is not FIELD=VALUE: write it like name=Ada or age=36");
        };
        let value = match serde_json::from_str(raw) {
            Ok(value) => value,
            // A number literal that no 64-bit number holds: storing it as text would
            // silently change its type.
            Err(e) if e.to_string().starts_with("number out of range") => bail!(
                "{name}={raw}: the number is out of range (numbers are 64-bit integers or floats); to store it as text, quote it: {name}='\"{raw}\"'"
            ),
            Err(_) => Value::String(raw.to_string()),
        };
        fields.insert(name.to_string(), value);
    }
    Ok(fields)
}

pub fn put(store: &Path, collection: &str, id: &str, pairs: &[String]) -> Result<()> {
    let fields = parse_fields(pairs)?;
    open(store)?.put(collection, id, Value::Object(fields))?;
    Ok(())
}

pub fn get(store: &Path, collection: &str, id: &str) -> Result<()> {
    let replica = open(store)?;
    match replica.get(collection, id)? {
        Some(fields) => out!("{}", Value::Object(fields))?,
        None if replica.is_deleted(collection, id)? => bail!(
            "record {collection}/{id} is deleted: a put brings it back with its latest fields \
             (`tidemark conflicts {collection} {id}` shows a delete that won over someone's concurrent undelete)"
        ),
        None => bail!("record {collection}/{id} does not exist"),
    }
    Ok(())
}

/// Deleting a deleted record succeeds; it writes something only to confirm a
/// delete that won over a concurrent undelete (see `tidemark conflicts`).
pub fn delete(store: &Path, collection: &str, id: &str) -> Result<()> {
    let replica = open(store)?;
    if replica.get(collection, id)?.is_none() && !replica.is_deleted(collection, id)? {
        bail!("record {collection}/{id} does not exist");
    }
    replica.delete(collection, id)?;
    Ok(())
}

pub fn list(store: &Path, collection: &str) -> Result<()> {
    let replica = open(store)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after: Option<String> = None;
    loop {
        let page = replica.list_raw(collection, after.as_deref(), 10_000)?;
        let written = page.rows.iter().try_for_each(|(id, row)| {
            // The view row is already canonical JSON: splice it in without re-parsing.
            out.write_all(b"{\"id\":")?;
            // Back to the io::Error it wraps, so that a closed pipe is recognised.
            serde_json::to_writer(&mut out, id).map_err(std::io::Error::from)?;
            out.write_all(b",\"fields\":")?;
            out.write_all(row)?;
            out.write_all(b"}\n")
        });
        crate::to_stdout(written)?;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    crate::to_stdout(out.flush())
}

/// One line of list format.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    fields: Map<String, Value>,
}

pub fn import(store: &Path, collection: &str, file: Option<&Path>, batch: usize) -> Result<()> {
    let replica = open(store)?;
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = match file {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::new(f)), size)
        }
        None => (Box::new(BufReader::new(std::io::stdin())), None),
    };
    let bar = crate::progress::bar(total, "importing");
    let batch = batch.max(1);
    let mut edits = Vec::with_capacity(batch);
    // The file line of each edit in the batch, for errors.
    let mut lines = Vec::with_capacity(batch);
    let mut imported = 0u64;
    for (n, line) in reader.lines().enumerate() {
        let line_no = n + 1;
        let line = line.with_context(|| format!("reading line {line_no}"))?;
        bar.inc(if total.is_some() { line.len() as u64 + 1 } else { 1 });
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "line {line_no}, column {}: {}; a list-format line looks like {{\"id\":\"c1\",\"fields\":{{\"name\":\"Ada\"}}}} ({imported} records before it were imported)",
                e.column(),
                without_position(&e)
            )
        })?;
        edits.push(Edit::Put {
            collection: collection.to_string(),
            id: parsed.id,
            fields: parsed.fields,
        });
        lines.push(line_no);
        if edits.len() == batch {
            imported += commit(&replica, &mut edits, &mut lines, imported)?;
        }
    }
    imported += commit(&replica, &mut edits, &mut lines, imported)?;
    bar.finish_and_clear();
    out!("{}", serde_json::json!({ "imported": imported }))?;
    Ok(())
}

/// serde_json's message without its " at line 1 column N" (always line 1 here).
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    }
}

/// Commits one batch; on a refused edit, names its line in the file.
fn commit(replica: &Replica, edits: &mut Vec<Edit>, lines: &mut Vec<usize>, before: u64) -> Result<u64> {
    let (Some(&first_line), Some(&last_line)) = (lines.first(), lines.last()) else {
        return Ok(0);
    };
    let lines = std::mem::take(lines);
    let n = edits.len() as u64;
    replica.apply_edits(std::mem::take(edits)).map_err(|e| {
        let not_imported = if first_line == last_line {
            format!("line {first_line} was not imported ({before} records before it were)")
        } else {
            format!("lines {first_line}–{last_line} were not imported ({before} records before them were)")
        };
        match e {
            tidemark::Error::Invalid(InvalidInput::InBatch { edit, error }) => {
                let line = lines.get(edit - 1).copied().unwrap_or(first_line);
                anyhow::anyhow!("line {line}: {error}; {not_imported}")
            }
            // A batch of one edit reports its error unwrapped.
            tidemark::Error::Invalid(error) if lines.len() == 1 => {
                anyhow::anyhow!("line {first_line}: {error}; {not_imported}")
            }
            other => anyhow::Error::new(other).context(not_imported),
        }
    })?;
    Ok(n)
}

pub fn conflicts(store: &Path, collection: Option<&str>, id: Option<&str>) -> Result<()> {
    for record in open(store)?.conflicts(collection, id)? {
        out!("{}", serde_json::to_string(&record)?)?;
    }
    Ok(())
}

pub fn status(store: &Path) -> Result<()> {
    let status = open(store)?.status()?;
    out!("{}", serde_json::to_string(&status)?)?;
    Ok(())
}
