//! Request counts and latency histograms per route, in Prometheus text
//! format. Labels are route templates and status codes, never content.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// What the server has seen since it started.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Series>>,
}

impl Metrics {
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let route = if route.is_empty() { "unmatched" } else { route };
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let s = l
                .entry((method.to_string(), route.to_string()))
                .or_default();
            let secs = took.as_secs_f64();
            s.count += 1;
            s.sum += secs;
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    /// Prometheus text exposition, followed by the given store gauges.
    pub(crate) fn render(&self, gauges: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP spoke_http_requests_total Requests answered, by method, route and status.\n# TYPE spoke_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((method, route, status), n) in r.iter() {
                let _ = writeln!(out, "spoke_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str("# HELP spoke_http_request_duration_seconds Time to answer, by method and route.\n# TYPE spoke_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for ((method, route), s) in l.iter() {
                let labels = format!("method=\"{method}\",route=\"{route}\"");
                for (i, le) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "spoke_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                        s.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "spoke_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "spoke_http_request_duration_seconds_sum{{{labels}}} {}",
                    s.sum
                );
                let _ = writeln!(
                    out,
                    "spoke_http_request_duration_seconds_count{{{labels}}} {}",
                    s.count
                );
            }
        }
        out.push_str("# HELP spoke_store_rows Rows in the spoke's stores, by table.\n# TYPE spoke_store_rows gauge\n");
        for (table, n) in gauges {
            let _ = writeln!(out, "spoke_store_rows{{table=\"{table}\"}} {n}");
        }
        out
    }
}
