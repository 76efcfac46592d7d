//! The command line, as DESIGN.md's CLI contract gives it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Offline-first record sync: a local store that syncs with a tidemark server"
)]
pub struct Cli {
    /// The client store file.
    #[arg(long, global = true, env = "TIDEMARK_STORE", default_value = "./tidemark.db")]
    pub store: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upsert a record: FIELD=VALUE pairs; VALUE is JSON if it parses, else a string.
    Put {
        collection: String,
        id: String,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Print a record's fields as one JSON object.
    Get { collection: String, id: String },
    /// Print one line per live record, by id: {"id":…,"fields":{…}}.
    List { collection: String },
    /// Delete a record.
    Delete { collection: String, id: String },
    /// Bulk upsert of list-format lines from FILE (or stdin), in batched transactions.
    Import {
        collection: String,
        file: Option<PathBuf>,
        /// Records per transaction.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
    },
    /// List fields with concurrent values.
    Conflicts {
        collection: Option<String>,
        id: Option<String>,
    },
    /// Print pending, pulled, rejected, server, user, space and last sync as JSON.
    Status,
}
