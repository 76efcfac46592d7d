//! `login`, `sync` and `rejected`: the client's side of the server.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tidemark::protocol::{Request, RoundSummary, SessionConfig};
use tidemark::remote::Remote;
use tidemark::remote::http::HttpRemote;
use tidemark::replica::{Sharing, SwitchLoss, SwitchPolicy};
use tidemark::sync::Round;
use tidemark::{Binding, Replica};

use crate::local::{open, open_or_create};
use crate::server::runtime;
use crate::words;

/// How `login` may switch a used store to another account.
pub struct SwitchOptions {
    pub yes: bool,
    pub sync_first: bool,
    pub export: Option<PathBuf>,
}

pub fn login(store: &Path, wanted: Binding, token: &str, options: &SwitchOptions) -> Result<ExitCode> {
    refuse_unagreed_switch(store, &wanted, options)?;
    let remote = HttpRemote::new(&wanted.server, token, &wanted.space)?;
    // Then the account: a wrong token, space or URL changes nothing, not even
    // the binding of a store that has one.
    if let Err(e) = runtime()?.block_on(remote.call(Request::Package)) {
        bail!("{}; nothing was changed", words::login_refused(&e, &wanted));
    }
    if let Some(loss) = open_or_create(store)?.switch_loss(&wanted)? {
        agree_to_switch(store, &loss, options)?;
    }
    // Agreed to (or nothing of another account there): the library clears
    // the store of another account, and keeps that of this one.
    let cleared = Replica::switch_account(store, Sharing::Processes, &wanted, token, SwitchPolicy::DiscardChanges)
        .context("switching accounts")?;
    if let Some(loss) = cleared {
        eprintln!(
            "cleared the data of {:?} on {}; initializing for {:?}",
            loss.current.user, loss.current.server, loss.wanted.user
        );
    }
    let replica = open(store)?;
    let (bar, mut observe) = crate::progress::sync_spinner();
    let summary = runtime()?.block_on(
        Round::new(&replica, SessionConfig::default())
            .observed(&mut observe)
            .run(&remote),
    );
    bar.finish_and_clear();
    match summary {
        Ok(summary) => report(&replica, &summary),
        Err(e) => bail!(
            "the initial sync failed: {}; the account is saved: `tidemark sync` retries",
            words::round_failed(&e, &wanted)
        ),
    }
}

/// Everything before clearing a used store: sync first, export, and the yes.
fn agree_to_switch(store: &Path, loss: &SwitchLoss, options: &SwitchOptions) -> Result<()> {
    let replica = open(store)?;
    let current = &loss.current;
    if options.sync_first {
        let token = replica.token()?.unwrap_or_default();
        let remote = HttpRemote::new(&current.server, &token, &current.space)?;
        let outcome = runtime()?.block_on(Round::new(&replica, SessionConfig::default()).run(&remote));
        let status = replica.status()?;
        if let Err(e) = outcome {
            bail!(
                "--sync-first: could not sync with {} ({e}); not switching: {} change(s) still pending",
                current.server,
                status.pending
            );
        }
        if status.pending > 0 {
            bail!(
                "--sync-first: {} change(s) are still pending after the sync; not switching",
                status.pending
            );
        }
    }
    // What the switch loses now, after the sync.
    let loss = replica.switch_loss(&loss.wanted)?.unwrap_or_else(|| loss.clone());
    if let Some(file) = &options.export {
        export_unsynced(&replica, file)?;
        eprintln!(
            "wrote {} unsynced and {} rejected change(s) to {} (raw ops in {}.ops)",
            loss.pending,
            loss.rejected,
            file.display(),
            file.display()
        );
    }
    if options.yes {
        return Ok(());
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!("{loss}.\nType yes to clear this store and switch: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("yes") {
            return Ok(());
        }
        bail!("not switching: nothing was changed");
    }
    Err(switch_refused(&loss))
}

fn switch_refused(loss: &SwitchLoss) -> anyhow::Error {
    anyhow::anyhow!(
        "{loss}. Nothing was changed. To keep the changes first: --sync-first (push them to the old server) or --export-unsynced FILE; to switch anyway: --yes"
    )
}

/// A switch to another account that nothing on the command line or at a
/// terminal can agree to is refused at once, whether the server answers or not.
fn refuse_unagreed_switch(store: &Path, wanted: &Binding, options: &SwitchOptions) -> Result<()> {
    let could_agree = options.yes
        || options.sync_first
        || options.export.is_some()
        || (std::io::stdin().is_terminal() && std::io::stderr().is_terminal());
    if could_agree || !store.try_exists().unwrap_or(false) {
        return Ok(());
    }
    match open(store)?.switch_loss(wanted)? {
        Some(loss) => Err(switch_refused(&loss)),
        None => Ok(()),
    }
}

/// Writes the records touched by unsynced (and rejected) ops, and the raw ops.
fn export_unsynced(replica: &Replica, file: &Path) -> Result<()> {
    let mut ops: Vec<(&str, tidemark::replica::PendingOp)> = Vec::new();
    ops.extend(replica.pending_ops(usize::MAX)?.into_iter().map(|p| ("pending", p)));
    ops.extend(replica.rejected_ops()?.into_iter().map(|p| ("rejected", p)));
    let mut records = std::collections::BTreeSet::new();
    let mut raw = String::new();
    for (state, p) in &ops {
        records.insert((p.op.collection.to_string(), p.op.record.to_string()));
        let wire = tidemark::protocol::message::WireOp::from_op(&p.op);
        raw.push_str(&serde_json::to_string(
            &serde_json::json!({"state": state, "op": wire}),
        )?);
        raw.push('\n');
    }
    let mut lines = String::new();
    for (collection, id) in records {
        let fields = replica
            .get(&collection, &id)?
            .map(serde_json::Value::Object)
            .unwrap_or(serde_json::Value::Null);
        lines.push_str(&serde_json::to_string(
            &serde_json::json!({"collection": collection, "id": id, "fields": fields}),
        )?);
        lines.push('\n');
    }
    std::fs::write(file, lines).with_context(|| format!("writing {}", file.display()))?;
    let mut ops_path = file.as_os_str().to_owned();
    ops_path.push(".ops");
    std::fs::write(&ops_path, raw).with_context(|| format!("writing {}", PathBuf::from(&ops_path).display()))?;
    Ok(())
}

pub fn sync(store: &Path) -> Result<ExitCode> {
    let replica = open(store)?;
    let Some(binding) = replica.binding()? else {
        bail!("this store is not bound to a server: run `tidemark login --server URL --user USER --space SPACE` first");
    };
    let token = replica.token()?.unwrap_or_default();
    let remote = HttpRemote::new(&binding.server, &token, &binding.space)?;
    let (bar, mut observe) = crate::progress::sync_spinner();
    let summary = runtime()?.block_on(
        Round::new(&replica, SessionConfig::default())
            .observed(&mut observe)
            .run(&remote),
    );
    bar.finish_and_clear();
    match summary {
        Ok(summary) => report(&replica, &summary),
        Err(e) => {
            // After a storage failure the open store refuses reads too: say no count then.
            let kept = match replica.status() {
                Ok(status) => format!("{} change(s) still pending, nothing lost", status.pending),
                Err(_) => "nothing lost".to_string(),
            };
            eprintln!("error: sync failed: {}; {kept}", words::round_failed(&e, &binding));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A completed round, as `sync` and `login` tell it: the summary on stdout,
/// what needs a person on stderr; exit 2 when the server refused changes.
fn report(replica: &Replica, summary: &RoundSummary) -> Result<ExitCode> {
    // The exit code and the refusals on stderr come whether or not stdout is still there.
    let printed = out!("{summary}");
    if summary.rewritten > 0 {
        eprintln!(
            "wrote {} edit(s) again as new changes: another store shared this one's actor (a restored backup or a copied file), or an earlier edit of the same record was refused",
            summary.rewritten
        );
    }
    // Conflicts are kept and shown: say so where a person looks after a sync.
    let conflicted = replica.status()?.conflicted;
    if conflicted > 0 {
        eprintln!("{conflicted} record(s) hold conflicting values; see `tidemark conflicts` (a new put resolves them)");
    }
    let refused = summary.refused();
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
    printed?;
    Ok(ExitCode::SUCCESS)
}

pub fn rejected(store: &Path, retry: bool, discard: bool) -> Result<ExitCode> {
    let replica = open(store)?;
    if retry || discard {
        let n = replica.resolve_rejected(retry)?;
        out!(
            "{}",
            serde_json::json!({ if retry { "retried" } else { "discarded" }: n })
        )?;
    } else {
        for r in replica.rejected()? {
            out!("{}", serde_json::to_string(&r)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
