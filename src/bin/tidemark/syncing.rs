//! `login`, `sync` and `rejected`: the client's side of the server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tidemark::Binding;
use tidemark::protocol::SessionConfig;
use tidemark::remote::http::HttpRemote;
use tidemark::sync::sync_once;

use crate::local::open;
use crate::server::runtime;

pub fn login(store: &Path, server: &str, user: &str, token: &str, space: &str, yes: bool) -> Result<ExitCode> {
    let replica = open(store)?;
    let wanted = Binding {
        server: server.trim_end_matches('/').to_string(),
        user: user.to_string(),
        space: space.to_string(),
    };
    if let Some(current) = replica.binding()? {
        if current != wanted {
            let what = switch_warning(&current, &wanted, &replica.status()?);
            if !yes {
                bail!("{what}. Run `tidemark sync` first to keep them, or repeat with --yes to clear the store.");
            }
            bail!("{what}. Switching accounts on a used store is not supported by this build yet: use a new --store.");
        }
    }
    // Same account (perhaps a new token), or a fresh store: keep the data, bind, sync.
    replica.bind(&wanted, token)?;
    let remote = HttpRemote::new(&wanted.server, token, space)?;
    let summary = runtime()?
        .block_on(sync_once(&replica, &remote, SessionConfig::default()))
        .context("initial sync")?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

pub fn sync(store: &Path) -> Result<ExitCode> {
    let replica = open(store)?;
    let Some(binding) = replica.binding()? else {
        bail!(
            "this store is not bound to a server: run `tidemark login --server URL --user USER --token TOKEN --space SPACE` first"
        );
    };
    let token = replica.token()?.unwrap_or_default();
    let remote = HttpRemote::new(&binding.server, &token, &binding.space)?;
    let summary = runtime()?.block_on(sync_once(&replica, &remote, SessionConfig::default()));
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let pending = replica.status().map(|s| s.pending).unwrap_or(0);
            eprintln!("error: the sync round did not complete: {e} ({pending} change(s) still pending, nothing lost)");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "pushed {} pulled {} rejected {} head {}{}",
        summary.pushed,
        summary.pulled,
        summary.rejected + summary.rejected_by_package,
        summary.head,
        if summary.epoch_changed {
            " (server store was reset: re-pushed the log)"
        } else {
            ""
        }
    );
    let refused = summary.rejected + summary.rejected_by_package;
    if refused > 0 {
        let reasons: Vec<String> = replica
            .rejected()?
            .iter()
            .rev()
            .take(refused as usize)
            .map(|r| format!("{}/{}: {}", r.collection, r.record, r.reason))
            .collect();
        eprintln!(
            "the server refused {refused} change(s); see `tidemark rejected`:\n  {}",
            reasons.join("\n  ")
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rejected(store: &Path, retry: bool, discard: bool) -> Result<ExitCode> {
    let replica = open(store)?;
    if retry || discard {
        let n = replica.resolve_rejected(retry)?;
        println!(
            "{}",
            serde_json::json!({ if retry { "retried" } else { "discarded" }: n })
        );
    } else {
        for r in replica.rejected()? {
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What switching a used store to another account would lose, in words.
pub fn switch_warning(current: &Binding, wanted: &Binding, status: &tidemark::Status) -> String {
    format!(
        "this store belongs to user {:?} on {} (space {:?}); switching to {:?} on {} (space {:?}) clears its downloaded data and loses {} unsynced change(s) and {} rejected one(s)",
        current.user,
        current.server,
        current.space,
        wanted.user,
        wanted.server,
        wanted.space,
        status.pending,
        status.rejected
    )
}
