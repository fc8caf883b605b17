//! Latency percentiles.

use std::time::Duration;

use serde_json::{Value, json};

/// Latency figures of one kind, in milliseconds.
pub(crate) struct Lat {
    /// How many latencies were measured.
    n: usize,
    /// Median.
    p50: f64,
    /// 90th percentile.
    p90: f64,
    /// 99th percentile: the tail the benchmark watches.
    p99: f64,
    /// The slowest.
    max: f64,
    /// The mean, to compare with the median.
    mean: f64,
}

/// The figures of `v` (none when empty).
pub(crate) fn lat(mut v: Vec<Duration>) -> Option<Lat> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Nearest-rank percentile.
    let pct = |p: f64| ms(v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
    let sum: f64 = v.iter().map(|d| ms(*d)).sum();
    Some(Lat {
        n: v.len(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: ms(*v.last().expect("non-empty")),
        mean: sum / v.len() as f64,
    })
}

/// The figures in the JSON line (`null` when none).
pub(crate) fn lat_json(l: &Option<Lat>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "n": l.n, "p50": r3(l.p50), "p90": r3(l.p90), "p99": r3(l.p99),
            "max": r3(l.max), "mean": r3(l.mean),
        }),
    }
}

/// The figures in the summary.
pub(crate) fn lat_line(l: &Option<Lat>) -> String {
    match l {
        None => "n/a".to_string(),
        Some(l) => format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (mean {:.2} ms, n={})",
            l.p50, l.p90, l.p99, l.max, l.mean, l.n
        ),
    }
}

/// Rounds to 3 decimals for the JSON line.
pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
