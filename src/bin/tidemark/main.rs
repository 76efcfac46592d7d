//! The `tidemark` binary: the CLI over the library. The only home of clap and anyhow.

mod args;
mod local;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<std::process::ExitCode> {
    use args::Command::*;
    let store = cli.store;
    match cli.command {
        Put { collection, id, fields } => local::put(&store, &collection, &id, &fields),
        Get { collection, id } => local::get(&store, &collection, &id),
        List { collection } => local::list(&store, &collection),
        Delete { collection, id } => local::delete(&store, &collection, &id),
        Import {
            collection,
            file,
            batch,
        } => local::import(&store, &collection, file.as_deref(), batch),
        Conflicts { collection, id } => local::conflicts(&store, collection.as_deref(), id.as_deref()),
        Status => local::status(&store),
    }?;
    Ok(std::process::ExitCode::SUCCESS)
}
