//! The local half of the CLI: edits and reads on the store, no server involved.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use tidemark::Replica;

/// Opens the store at `store`, which must exist: only `login` and `import` make
/// one, so that a mistyped --store is an error and not an empty store.
pub fn open(store: &Path) -> Result<Replica> {
    match store.try_exists() {
        Ok(true) => open_or_create(store),
        Ok(false) => bail!(
            "no store at {}: run `tidemark login` (or `tidemark import`) to create one there, or pass --store with the path of yours",
            store.display()
        ),
        Err(e) => bail!("cannot look for a store at {}: {e}", store.display()),
    }
}

/// Opens the store at `store`, creating it (and its directory) if needed.
pub fn open_or_create(store: &Path) -> Result<Replica> {
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

/// Said beside a read or an edit that may miss what the server holds.
const UNFINISHED: &str = "this store's first download from the server is unfinished: `tidemark sync` finishes it";

/// What to add to "does not exist": the record may be one not downloaded yet.
fn missing_hint(replica: &Replica) -> Result<String> {
    Ok(if replica.initial_sync_unfinished()? {
        format!(" here yet; {UNFINISHED}")
    } else {
        String::new()
    })
}

pub fn put(store: &Path, collection: &str, id: &str, pairs: &[String]) -> Result<()> {
    let fields = parse_fields(pairs)?;
    let replica = open(store)?;
    if replica.initial_sync_unfinished()?
        && replica.get(collection, id)?.is_none()
        && !replica.is_deleted(collection, id)?
    {
        eprintln!(
            "warning: {collection}/{id} is new to this store, and {UNFINISHED}. If the server holds \
             this record, its values and these meet as concurrent ones (`tidemark conflicts` lists them)"
        );
    }
    replica.put(collection, id, Value::Object(fields))?;
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
        None => bail!("record {collection}/{id} does not exist{}", missing_hint(&replica)?),
    }
    Ok(())
}

/// Deleting a deleted record succeeds; it writes something only to confirm a
/// delete that won over a concurrent undelete (see `tidemark conflicts`).
pub fn delete(store: &Path, collection: &str, id: &str) -> Result<()> {
    let replica = open(store)?;
    if replica.get(collection, id)?.is_none() && !replica.is_deleted(collection, id)? {
        bail!("record {collection}/{id} does not exist{}", missing_hint(&replica)?);
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
    crate::to_stdout(out.flush())?;
    if replica.initial_sync_unfinished()? {
        eprintln!("note: records not downloaded yet are not listed: {UNFINISHED}");
    }
    Ok(())
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
