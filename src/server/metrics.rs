//! What an operator watches, in the Prometheus text format at `GET /metrics`.
//! The only module that names prometheus-client.
//!
//! Labels stay bounded: routes are the router's patterns (never a space or a
//! record name), codes and statuses come from fixed sets.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's counters, shared by the service core and the HTTP front.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram>,
    errors: Family<Labels, Counter>,
    pushes: Counter,
    ops_accepted: Counter,
    ops_refused: Family<Labels, Counter>,
    pull_lag: Histogram,
    store_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tidemark");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            requests.clone(),
        );
        // 1 ms to about 33 s.
        let durations =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern",
            durations.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "http_errors",
            "Error answers by error code (the `code` of the JSON body)",
            errors.clone(),
        );
        let pushes = Counter::default();
        registry.register("pushes", "Push requests that reached the store", pushes.clone());
        let ops_accepted = Counter::default();
        registry.register(
            "ops_accepted",
            "Pushed ops the store holds after their push (new, or sent again and stored before)",
            ops_accepted.clone(),
        );
        let ops_refused = Family::<Labels, Counter>::default();
        registry.register(
            "ops_refused",
            "Pushed ops refused one by one, by refusal code",
            ops_refused.clone(),
        );
        let pull_lag = Histogram::new(exponential_buckets(1.0, 4.0, 12));
        registry.register(
            "pull_lag_ops",
            "How many ops a pulling replica was behind its space's head when it asked",
            pull_lag.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "1 while the store is usable, 0 while its storage is failing (answering 503)",
            store_up.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            errors,
            pushes,
            ops_accepted,
            ops_refused,
            pull_lag,
            store_up,
        }
    }

    /// One answered request: `route` is the router's pattern ("unmatched" for none).
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration, error_code: Option<&str>) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.durations
            .get_or_create(&vec![("route", route.to_string())])
            .observe(took.as_secs_f64());
        if let Some(code) = error_code {
            self.errors.get_or_create(&vec![("code", code.to_string())]).inc();
        }
    }

    /// A push that reached the store: `accepted` ops held, refusals by code.
    pub fn push<'a>(&self, accepted: usize, refused: impl IntoIterator<Item = &'a str>) {
        self.pushes.inc();
        self.ops_accepted.inc_by(accepted as u64);
        for code in refused {
            self.ops_refused.get_or_create(&vec![("code", code.to_string())]).inc();
        }
    }

    /// A pull from `since` in a space whose head is `head`.
    pub fn pull(&self, since: u64, head: u64) {
        self.pull_lag.observe(head.saturating_sub(since) as f64);
    }

    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
