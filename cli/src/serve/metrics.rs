//! Counters of the edge server and their Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::conn::ConnStats;
use super::state::StateSource;

/// Request counters; connection counters live in [`ConnStats`].
#[derive(Debug)]
pub struct Metrics {
    /// Responses by status code (index: code - 100).
    by_status: Vec<AtomicU64>,
    /// Response body bytes sent (as declared by the response).
    pub bytes: AtomicU64,
    /// Long-polls being held now.
    pub long_polls: AtomicU64,
    /// Access log lines dropped because the log's reader fell behind.
    pub access_log_dropped: AtomicU64,
    /// The served manifest's version, or -1 without a valid manifest.
    pub manifest_version: AtomicI64,
    /// The served manifest's `created_at` (unix seconds), or -1.
    pub manifest_created_at: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            by_status: (100..600).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            long_polls: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
            manifest_version: AtomicI64::new(-1),
            manifest_created_at: AtomicI64::new(-1),
        }
    }
}

impl Metrics {
    /// Counts one response.
    pub fn record(&self, status: u16, bytes: u64) {
        if let Some(c) = self.by_status.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of these counters, `conns` and the content
    /// the customer-state API answers from (`state`), at `now`.
    pub fn render(&self, conns: &ConnStats, now: i64, state: &StateSource) -> String {
        let state_version = state.current().map(|s| s.view.version());
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "entitle_edge_connections",
            "gauge",
            "Connections open now.",
            load(&conns.open),
        );
        metric(
            "entitle_edge_connections_pending",
            "gauge",
            "Connections open now that have not sent an authorized request yet.",
            load(&conns.pending),
        );
        metric(
            "entitle_edge_connections_accepted_total",
            "counter",
            "Connections accepted.",
            load(&conns.accepted),
        );
        metric(
            "entitle_edge_connections_evicted_total",
            "counter",
            "Pending connections closed to make room for new ones.",
            load(&conns.evicted),
        );
        metric(
            "entitle_edge_connections_refused_total",
            "counter",
            "Connections refused because every slot was held by an authorized connection.",
            load(&conns.refused),
        );
        metric(
            "entitle_edge_connections_write_timeouts_total",
            "counter",
            "Connections closed because the client stopped reading a response.",
            load(&conns.write_timeouts),
        );
        metric(
            "entitle_edge_connections_head_timeouts_total",
            "counter",
            "Connections closed because no whole request head arrived in time (idle keep-alive \
             connections included).",
            load(&conns.head_timeouts),
        );
        metric(
            "entitle_edge_accept_errors_total",
            "counter",
            "Failed accepts (for example out of file descriptors).",
            load(&conns.accept_errors),
        );
        metric(
            "entitle_edge_long_polls",
            "gauge",
            "Manifest long-polls held now.",
            load(&self.long_polls),
        );
        metric(
            "entitle_edge_response_bytes_total",
            "counter",
            "Response body bytes sent.",
            load(&self.bytes),
        );
        metric(
            "entitle_edge_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the log's reader fell behind.",
            load(&self.access_log_dropped),
        );
        let version = self.manifest_version.load(Ordering::Relaxed);
        metric(
            "entitle_edge_manifest_version",
            "gauge",
            "Version of the served manifest (-1: none valid).",
            version.to_string(),
        );
        let created = self.manifest_created_at.load(Ordering::Relaxed);
        let age = if created < 0 {
            "NaN".to_owned()
        } else {
            (now - created).max(0).to_string()
        };
        metric(
            "entitle_edge_manifest_age_seconds",
            "gauge",
            "Seconds since the served manifest's version was created.",
            age,
        );
        metric(
            "entitle_edge_state_version",
            "gauge",
            "Version of the content the customer-state API answers from (-1: none).",
            state_version.map_or("-1".to_owned(), |v| v.to_string()),
        );
        metric(
            "entitle_edge_state_deltas_applied_total",
            "counter",
            "Updates of the customer-state API made by applying published deltas.",
            load(&state.deltas_applied),
        );
        metric(
            "entitle_edge_state_snapshots_loaded_total",
            "counter",
            "Updates of the customer-state API made by loading a whole snapshot.",
            load(&state.snapshots_loaded),
        );
        let _ = writeln!(
            out,
            "# HELP entitle_edge_requests_total Responses by status code.\n\
             # TYPE entitle_edge_requests_total counter"
        );
        for (i, c) in self.by_status.iter().enumerate() {
            // Heads the HTTP layer refused never reached a handler; they are answered all the same.
            let refused = match i + 100 {
                400 => conns.bad_heads.load(Ordering::Relaxed),
                431 => conns.large_heads.load(Ordering::Relaxed),
                _ => 0,
            };
            let n = c.load(Ordering::Relaxed) + refused;
            if n > 0 {
                let _ = writeln!(
                    out,
                    "entitle_edge_requests_total{{code=\"{}\"}} {n}",
                    i + 100
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record(200, 10);
        m.record(200, 5);
        m.record(304, 0);
        m.record(999, 1);
        m.access_log_dropped.store(3, Ordering::Relaxed);
        m.manifest_version.store(7, Ordering::Relaxed);
        m.manifest_created_at.store(100, Ordering::Relaxed);
        let state = StateSource::default();
        state.deltas_applied.store(2, Ordering::Relaxed);
        let conns = ConnStats::default();
        conns.large_heads.store(4, Ordering::Relaxed);
        let text = m.render(&conns, 130, &state);
        assert!(text.contains("entitle_edge_requests_total{code=\"200\"} 2\n"));
        assert!(text.contains("entitle_edge_requests_total{code=\"304\"} 1\n"));
        assert!(!text.contains("code=\"999\""));
        assert!(text.contains("entitle_edge_requests_total{code=\"431\"} 4\n"));
        assert!(!text.contains("code=\"400\""));
        assert!(text.contains("entitle_edge_response_bytes_total 16\n"));
        assert!(text.contains("entitle_edge_manifest_version 7\n"));
        assert!(text.contains("entitle_edge_access_log_dropped_total 3\n"));
        assert!(text.contains("entitle_edge_manifest_age_seconds 30\n"));
        assert!(text.contains("# TYPE entitle_edge_connections gauge\n"));
        assert!(text.contains("entitle_edge_state_version -1\n"));
        assert!(text.contains("entitle_edge_state_deltas_applied_total 2\n"));
        assert!(text.contains("entitle_edge_state_snapshots_loaded_total 0\n"));
    }
}
