//! The bounds a server keeps every client within.

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ops in one push.
    pub max_ops_per_push: usize,
    /// Bytes of one op's change.
    pub max_op_bytes: usize,
    /// Bytes of one request body (HTTP).
    pub max_body_bytes: usize,
    /// Ops in one pull page (a larger `limit` is clamped).
    pub max_pull_page: usize,
    /// Documents in one snapshot page (a larger `limit` is clamped).
    pub max_snapshot_page: usize,
    /// Op or document bytes in one pull or snapshot page (the first item always
    /// comes), so that memory stays bounded whatever the op sizes.
    pub max_page_bytes: usize,
    /// Seconds a live pull (`wait`) is held at most; a longer wait is clamped.
    pub max_pull_wait_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ops_per_push: 1000,
            max_op_bytes: 256 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_pull_page: 2000,
            max_snapshot_page: 2000,
            max_page_bytes: 4 << 20,
            max_pull_wait_secs: 30,
        }
    }
}
