//! Request counts and latency histograms per route, in Prometheus text
//! format. Labels are route templates and status codes, never content:
//! a method and route pair missing from the route table is counted as
//! `other`/`other`, so no client can add series (the body stays bounded).

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
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    latency: Mutex<BTreeMap<(&'static str, &'static str), Series>>,
}

impl Metrics {
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, took: Duration) {
        let (method, route) =
            crate::routes::find(method, route).map_or(("other", "other"), |r| (r.method, r.path));
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method, route, status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let s = l.entry((method, route)).or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_and_unknown_routes_add_no_series() {
        let m = Metrics::default();
        let took = Duration::from_millis(1);
        m.record("GET", "/health", 200, took);
        m.record("FOO", "/health", 404, took);
        let baseline = m.render(&[]).len();
        let long = "X".repeat(8 * 1024);
        for i in 0..300 {
            m.record(&format!("M{i}"), "/health", 404, took);
            m.record(&long, "", 404, took);
            m.record("GET", &format!("/random/{i}"), 404, took);
            m.record("GET", "/health", 200, took);
        }
        let body = m.render(&[]);
        assert!(!body.contains("XXXX") && !body.contains("/random/"));
        assert!(!body.contains("M17"));
        assert!(body.contains("method=\"other\",route=\"other\",status=\"404\"} 901"));
        assert!(body.contains("method=\"GET\",route=\"/health\",status=\"200\"} 301"));
        // Only counts and sums grow (a few bytes), never the series.
        assert!(body.len() <= baseline + 1024, "{} > {baseline}", body.len());
    }
}
