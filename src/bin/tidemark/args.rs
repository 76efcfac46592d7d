//! The command line, as README.md documents it: scripts rely on it exactly.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Offline-first record sync: a local store that syncs with a tidemark server"
)]
pub struct Cli {
    /// The client store file [default: ./tidemark.db]. May also follow a client
    /// command (`tidemark put … --store PATH`).
    #[arg(long, env = "TIDEMARK_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The client store a command works on: its own `--store`, else the one
    /// before it (or TIDEMARK_STORE), else ./tidemark.db. None for the commands
    /// that use no client store (`serve`, `admin`, `demo`).
    pub fn client_store(&self) -> Option<PathBuf> {
        use Command::*;
        let own = match &self.command {
            Put { at, .. }
            | Get { at, .. }
            | List { at, .. }
            | Delete { at, .. }
            | Import { at, .. }
            | Conflicts { at, .. }
            | Status { at }
            | Login { at, .. }
            | Sync { at, .. }
            | Rejected { at, .. } => at.store.clone(),
            Serve { .. } | Admin { .. } | Demo => return None,
        };
        Some(
            own.or_else(|| self.store.clone())
                .unwrap_or_else(|| PathBuf::from("./tidemark.db")),
        )
    }
}

/// `--store` after a client command. Only the client commands have it, so that
/// `serve` and `admin` do not show an option they ignore.
#[derive(Debug, clap::Args)]
pub struct StoreArg {
    /// The client store file [default: ./tidemark.db, or TIDEMARK_STORE].
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upsert a record: FIELD=VALUE pairs; VALUE is JSON if it parses, else a string.
    Put {
        collection: String,
        id: String,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Print a record's fields as one JSON object.
    Get {
        collection: String,
        id: String,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Print one line per live record, by id: {"id":…,"fields":{…}}.
    List {
        collection: String,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Delete a record.
    Delete {
        collection: String,
        id: String,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Bulk upsert of list-format lines from FILE (or stdin), in batched transactions.
    /// Prints {"imported": N}, N being the lines applied: a record on two lines is
    /// upserted twice and counts twice.
    Import {
        collection: String,
        file: Option<PathBuf>,
        /// Records per transaction.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[command(flatten)]
        at: StoreArg,
    },
    /// List fields with concurrent values.
    Conflicts {
        collection: Option<String>,
        id: Option<String>,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Print pending, pulled, rejected, conflicted (records with conflicts), server, user, space and last sync as JSON.
    Status {
        #[command(flatten)]
        at: StoreArg,
    },
    /// Run a sync server.
    Serve {
        /// Directory of the server's redb store (the embedded default).
        #[arg(long, required_unless_present = "postgres")]
        data: Option<PathBuf>,
        /// Keep everything in PostgreSQL instead (postgres://user@host:port/db), so
        /// that several server processes can serve one database; `--data` is then
        /// not read.
        #[arg(long, env = "TIDEMARK_POSTGRES_URL", hide_env_values = true)]
        postgres: Option<String>,
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: String,
        /// Admin token for the admin routes.
        #[arg(long, env = "TIDEMARK_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[command(flatten)]
        connections: ConnectionArgs,
    },
    /// Administer a server: spaces, users, grants.
    Admin {
        #[arg(long)]
        server: String,
        #[arg(long, env = "TIDEMARK_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Bind this store to an account and run the initial sync.
    Login {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        /// The user's token. Safer than this option, which `ps` and shell history
        /// show: TIDEMARK_TOKEN, --token-stdin, or (on a terminal) the prompt
        /// that asks for it when none is given.
        #[arg(long, env = "TIDEMARK_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read the token from the first line of standard input.
        #[arg(long)]
        token_stdin: bool,
        #[arg(long)]
        space: String,
        /// Answer yes to clearing another account's data.
        #[arg(long)]
        yes: bool,
        /// Before switching accounts, push pending changes to the old server; refuse to switch if that fails.
        #[arg(long)]
        sync_first: bool,
        /// Before switching accounts, write unsynced changes to FILE (list format with a
        /// collection key) and their raw ops to FILE.ops.
        #[arg(long, value_name = "FILE")]
        export_unsynced: Option<PathBuf>,
        #[command(flatten)]
        at: StoreArg,
    },
    /// Push pending changes and pull new ones: exit 0 when all reached the server,
    /// 2 when the server refused some (see `status`), 1 when the round failed.
    Sync {
        /// Keep syncing in the background until Ctrl-C: on the interval and soon after local edits.
        #[arg(long)]
        watch: bool,
        /// Seconds between rounds with --watch.
        #[arg(long, default_value_t = 30, requires = "watch")]
        interval: u64,
        #[command(flatten)]
        at: StoreArg,
    },
    /// A whole story on an embedded server: two people edit offline, sync, converge.
    Demo,
    /// List the ops the server refused, with reasons; retry or discard them.
    Rejected {
        /// Write the values they wrote again, as new edits for the next sync.
        #[arg(long, conflicts_with = "discard")]
        retry: bool,
        /// Drop them from the rejected list for good.
        #[arg(long)]
        discard: bool,
        #[command(flatten)]
        at: StoreArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a space, optionally with a package (JSON file).
    CreateSpace {
        space: String,
        #[arg(long)]
        package: Option<PathBuf>,
    },
    /// Replace a space's package.
    SetPackage { space: String, package: PathBuf },
    /// Create a user; prints its token on one line.
    AddUser { user: String },
    /// Issue another token for an existing user; prints it on one line.
    NewToken { user: String },
    /// Grant a user a space.
    Grant {
        user: String,
        space: String,
        #[arg(long)]
        read_only: bool,
    },
    /// End a user's membership of a space (its next request to it answers 404).
    Revoke { user: String, space: String },
    /// Revoke a token, by its id (the middle part of tm1.ID.SECRET); the whole
    /// token is taken too, but then it shows in `ps` and shell history.
    RevokeToken { token: String },
    /// List users and their token ids (never secrets), one JSON object a line.
    Users,
    /// List spaces, their package versions and members, one JSON object a line.
    Spaces,
}

/// How `serve` treats connections (see `tidemark::server::ServeConfig`).
#[derive(Debug, clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a client has to send a request's headers; also how long a
    /// kept-alive connection may sit idle.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a whole request (its body included) may take before 408.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Connections served at once; more wait to be accepted. Default: 1024, or
    /// the open-file limit less 64 when that is lower.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// Seconds a stopping server (SIGTERM, SIGINT) lets requests in flight finish.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Seconds a live pull (`pull?wait=`) is held at most; each held pull keeps
    /// one connection. 0 answers every pull at once.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub max_pull_wait: u64,
}
