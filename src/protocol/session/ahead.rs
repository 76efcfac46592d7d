//! Asking ahead: a snapshot page names the cursor of the next one, so the
//! request that follows it is known before the page is applied. A driver may
//! send that request while the page commits, and the next page downloads (and
//! the server reads it) in the meantime.
//!
//! The session itself stays strictly one request at a time: the driver hands
//! it the early answer only when `next_request` asks for exactly the request
//! that was sent ahead, and drops it otherwise (another process moved the
//! bootstrap on, or applying the page failed).

use super::{InFlight, Request, Response, Session};

impl Session {
    /// The request that will follow `response` once it is applied, when that
    /// can be known before: the next page of a snapshot. None for every other
    /// answer.
    pub fn request_after(&self, response: &Response) -> Option<Request> {
        match (&self.in_flight, response) {
            (InFlight::Snapshot { .. }, Response::Snapshot(page)) => page.next.as_ref().map(|next| Request::Snapshot {
                after: Some(next.clone()),
                limit: self.config.snapshot_page,
            }),
            _ => None,
        }
    }
}
