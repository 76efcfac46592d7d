//! The account a replica belongs to, with one spelling of its server URL.

use serde::{Deserialize, Serialize};

/// The (server URL, user, space) a replica belongs to.
///
/// Make one with [`Binding::new`], which writes the server URL in one
/// spelling; compare with [`Binding::same_account`], which also reads a
/// binding stored in another spelling as the account it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub server: String,
    pub user: String,
    pub space: String,
}

impl Binding {
    /// A binding whose server URL is normalised (see [`Binding::normalize_server`]).
    pub fn new(server: &str, user: &str, space: &str) -> Binding {
        Binding {
            server: Binding::normalize_server(server),
            user: user.to_string(),
            space: space.to_string(),
        }
    }

    /// The one spelling of a server URL: no surrounding blanks, scheme and
    /// host in lower case, no default port (80 for http, 443 for https), no
    /// trailing slash. `HTTP://Sync.Example.com:443/` and
    /// `http://sync.example.com` name one server; paths keep their case.
    pub fn normalize_server(url: &str) -> String {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.trim_end_matches('/').to_string();
        };
        let scheme = scheme.to_ascii_lowercase();
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        // Credentials before an `@` keep their case; the host is case-blind.
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (format!("{credentials}@"), host),
            None => (String::new(), authority),
        };
        let mut host = host.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => Some(":80"),
            "https" => Some(":443"),
            _ => None,
        };
        if let Some(port) = default_port.filter(|port| host.ends_with(port)) {
            host.truncate(host.len() - port.len());
        }
        format!("{scheme}://{credentials}{host}{}", path.trim_end_matches('/'))
    }

    /// Whether `other` names the same account: the same user and space on the
    /// same server, however either URL is spelled.
    pub fn same_account(&self, other: &Binding) -> bool {
        self.user == other.user
            && self.space == other.space
            && Binding::normalize_server(&self.server) == Binding::normalize_server(&other.server)
    }
}
