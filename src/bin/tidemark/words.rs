//! Failures of the client's talk with a server, in words that name the cause
//! first and what to do about it.

use tidemark::Binding;
use tidemark::protocol::ErrorCode;
use tidemark::remote::RemoteError;

/// Why `login` could not check the account with the server (nothing was changed yet).
pub fn login_refused(e: &RemoteError, wanted: &Binding) -> String {
    let server = &wanted.server;
    match (e.status, &e.body.code) {
        (None, ErrorCode::Unreachable) => format!(
            "{}: check the server URL (--server) and that the server runs",
            e.body.message
        ),
        (Some(401), _) => format!(
            "the server at {server} refused the token (401: wrong or revoked): check it, or ask the server's admin for a new one (`tidemark admin new-token {}`)",
            wanted.user
        ),
        (Some(404), _) => format!(
            "the server at {server} has no space {:?} that the token's user may use (404): check the space name (--space), or ask the server's admin to grant it",
            wanted.space
        ),
        _ => answer(e, server),
    }
}

/// Why a sync round of a bound store failed.
pub fn round_failed(e: &tidemark::Error, binding: &Binding) -> String {
    match e {
        tidemark::Error::Remote(remote) => match remote.status {
            Some(401) => format!(
                "the server at {} refused this store's token (401: revoked or replaced): `tidemark login` with a new token for {:?} (the data is kept)",
                binding.server, binding.user
            ),
            Some(404) => format!(
                "the server at {} has no space {:?} that {:?} may use (404: deleted, or the grant revoked): ask the server's admin",
                binding.server, binding.space, binding.user
            ),
            _ => answer(remote, &binding.server),
        },
        tidemark::Error::StorageFailed(cause) => {
            format!("the store's disk failed ({cause}): free disk space (or fix the device) and sync again")
        }
        other => other.to_string(),
    }
}

/// Any other failed request: the server's own words, with its status.
fn answer(e: &RemoteError, server: &str) -> String {
    match e.status {
        Some(status) => format!("the server at {server} answered {status}: {}", e.body.message),
        None => e.body.message.clone(),
    }
}
