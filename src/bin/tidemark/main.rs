//! The `tidemark` binary: the CLI over the library. The only home of clap and anyhow.

/// `println!` for the CLI's output: an error instead of a panic when stdout is
/// closed early (`tidemark list contacts | head -1`); `main` then ends quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        crate::to_stdout(writeln!(std::io::stdout().lock(), $($arg)*))
    }};
}

/// The reader of our standard output went away. Only writes to stdout produce it,
/// so a broken pipe anywhere else (an export file, a socket) stays an error.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The result of a write to stdout, with a closed pipe turned into [`StdoutClosed`].
fn to_stdout(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

mod args;
mod demo;
mod import;
mod local;
mod panics;
mod progress;
mod server;
mod syncing;
mod token;
mod watch;
mod words;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Exit 2 means "the server refused some changes" (scripts rely on it):
            // a command line clap refuses is a failure like any other, 1.
            return if e.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    let store = cli.client_store();
    let command = move || match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`| head`): like other Unix tools, stop quietly.
        Err(e) if e.chain().any(|cause| cause.is::<StdoutClosed>()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    match store {
        Some(store) => panics::run_guarded(&store, command),
        None => command(),
    }
}

fn run(cli: args::Cli) -> anyhow::Result<std::process::ExitCode> {
    use args::Command::*;
    // Only the client commands have one; the others never read it.
    let store = cli.client_store().unwrap_or_default();
    // A server's log is its operator's view; a client command says what went
    // wrong once, in its own error line, and logs only when RUST_LOG asks.
    init_logging(if matches!(cli.command, Serve { .. }) {
        "warn"
    } else {
        "off"
    });
    match cli.command {
        Serve {
            data,
            postgres,
            listen,
            admin_token,
            connections,
        } => {
            let store = match (postgres, data) {
                (Some(url), _) => server::Store::Postgres(url),
                (None, Some(data)) => server::Store::Redb(data),
                (None, None) => anyhow::bail!("serve needs --data DIR or --postgres URL"),
            };
            return server::serve(store, &listen, &admin_token, &connections);
        }
        Admin {
            server,
            admin_token,
            action,
        } => return server::admin(&server, &admin_token, action),
        Login {
            server,
            user,
            token,
            token_stdin,
            space,
            yes,
            sync_first,
            export_unsynced,
            at: _,
        } => {
            let wanted = tidemark::Binding::new(&server, &user, &space);
            let token = token::resolve(token, token_stdin, &user, &wanted.server)?;
            let options = syncing::SwitchOptions {
                yes,
                sync_first,
                export: export_unsynced,
            };
            return syncing::login(&store, wanted, &token, &options);
        }
        Sync { watch: false, .. } => return syncing::sync(&store),
        Sync {
            watch: true, interval, ..
        } => return watch::run(&store, interval),
        Demo => return demo::run(),
        Rejected { retry, discard, .. } => return syncing::rejected(&store, retry, discard),
        Put {
            collection, id, fields, ..
        } => local::put(&store, &collection, &id, &fields),
        Get { collection, id, .. } => local::get(&store, &collection, &id),
        List { collection, .. } => local::list(&store, &collection),
        Delete { collection, id, .. } => local::delete(&store, &collection, &id),
        Import {
            collection,
            file,
            batch,
            ..
        } => import::import(&store, &collection, file.as_deref(), batch),
        Conflicts { collection, id, .. } => local::conflicts(&store, collection.as_deref(), id.as_deref()),
        Status { .. } => local::status(&store),
    }?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// `tracing` logs on stderr, filtered by `RUST_LOG` (else by `default`);
/// colour only on a terminal, so a log file or a journal holds plain text.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
