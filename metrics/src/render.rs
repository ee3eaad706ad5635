//! The Prometheus text exposition format (version 0.0.4), written by hand: a
//! pure function from snapshots to text, so it is tested line by line
//! without a socket.
//!
//! Per family: `# HELP`, `# TYPE`, then one line per series; a histogram
//! series becomes cumulative `_bucket{le=...}` lines ending in `le="+Inf"`,
//! then `_sum` and `_count` (equal to the `+Inf` bucket by construction).

use std::fmt::Write;

use crate::registry::{FamilySnapshot, SeriesSnapshot, SeriesValue};

/// The `Content-Type` of the text this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn encode(families: &[FamilySnapshot]) -> String {
    let mut out = String::new();
    for family in families {
        encode_family(&mut out, family);
    }
    out
}

fn encode_family(out: &mut String, family: &FamilySnapshot) {
    // Writing to a String cannot fail; `let _ =` keeps that visible.
    let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
    for series in &family.series {
        encode_series(out, &family.name, series);
    }
}

fn encode_series(out: &mut String, name: &str, series: &SeriesSnapshot) {
    match &series.value {
        SeriesValue::Counter(value) => {
            let _ = writeln!(out, "{name}{} {value}", labels(&series.labels, None));
        }
        SeriesValue::Gauge(value) => {
            let _ = writeln!(out, "{name}{} {value}", labels(&series.labels, None));
        }
        SeriesValue::Histogram {
            bounds,
            counts,
            sum,
        } => {
            let mut cumulative = 0u64;
            for (index, count) in counts.iter().enumerate() {
                cumulative += count;
                let le = bounds.get(index).map_or("+Inf".to_string(), |b| number(*b));
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {cumulative}",
                    labels(&series.labels, Some(&le))
                );
            }
            let plain = labels(&series.labels, None);
            let _ = writeln!(out, "{name}_sum{plain} {}", number(*sum));
            let _ = writeln!(out, "{name}_count{plain} {cumulative}");
        }
    }
}

/// `{a="x",le="0.5"}`, or nothing when there are no labels.
fn labels(labels: &[(String, String)], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// Floats as Prometheus parses them: `+Inf`, `-Inf`, `NaN`, else Rust's
/// shortest round-trip decimal (never an exponent), e.g. `0.005`, `1`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MetricKind, Registry};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_and_gauges_render_help_type_and_one_line_per_series() {
        let registry = Registry::new();
        let statements = registry
            .counter_vec(
                "arbor_gateway_statements_total",
                "Statements executed.",
                &["kind"],
            )
            .unwrap();
        statements.with(&["select"]).add(3);
        statements.with(&["insert"]).inc();
        registry
            .gauge("arbor_gateway_connections", "Open connections.")
            .unwrap()
            .set(-2);
        assert_eq!(
            lines(&registry.render()),
            vec![
                "# HELP arbor_gateway_statements_total Statements executed.",
                "# TYPE arbor_gateway_statements_total counter",
                "arbor_gateway_statements_total{kind=\"select\"} 3",
                "arbor_gateway_statements_total{kind=\"insert\"} 1",
                "# HELP arbor_gateway_connections Open connections.",
                "# TYPE arbor_gateway_connections gauge",
                "arbor_gateway_connections -2",
            ]
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_then_sum_and_count() {
        let registry = Registry::new();
        let latency = registry
            .histogram_vec(
                "arbor_rpc_duration_seconds",
                "RPC latency.",
                &["method"],
                &[0.005, 0.5, 1.0],
            )
            .unwrap();
        let get = latency.with(&["get"]);
        get.observe(0.00390625);
        get.observe(0.25);
        get.observe(0.75);
        get.observe(2.0);
        assert_eq!(
            lines(&registry.render()),
            vec![
                "# HELP arbor_rpc_duration_seconds RPC latency.",
                "# TYPE arbor_rpc_duration_seconds histogram",
                "arbor_rpc_duration_seconds_bucket{method=\"get\",le=\"0.005\"} 1",
                "arbor_rpc_duration_seconds_bucket{method=\"get\",le=\"0.5\"} 2",
                "arbor_rpc_duration_seconds_bucket{method=\"get\",le=\"1\"} 3",
                "arbor_rpc_duration_seconds_bucket{method=\"get\",le=\"+Inf\"} 4",
                "arbor_rpc_duration_seconds_sum{method=\"get\"} 3.00390625",
                "arbor_rpc_duration_seconds_count{method=\"get\"} 4",
            ]
        );
    }

    #[test]
    fn an_unlabelled_metric_renders_at_zero_before_any_update() {
        let registry = Registry::new();
        registry
            .counter("arbor_root_leader_changes_total", "Leader changes seen.")
            .unwrap();
        registry.histogram("arbor_x_seconds", "X.", &[1.0]).unwrap();
        assert_eq!(
            lines(&registry.render()),
            vec![
                "# HELP arbor_root_leader_changes_total Leader changes seen.",
                "# TYPE arbor_root_leader_changes_total counter",
                "arbor_root_leader_changes_total 0",
                "# HELP arbor_x_seconds X.",
                "# TYPE arbor_x_seconds histogram",
                "arbor_x_seconds_bucket{le=\"1\"} 0",
                "arbor_x_seconds_bucket{le=\"+Inf\"} 0",
                "arbor_x_seconds_sum 0",
                "arbor_x_seconds_count 0",
            ]
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let families = vec![FamilySnapshot {
            name: "arbor_escaped_total".into(),
            help: "back\\slash and\nnewline".into(),
            kind: MetricKind::Counter,
            series: vec![SeriesSnapshot {
                labels: vec![("v".into(), "a\"b\\c\nd".into())],
                value: SeriesValue::Counter(1),
            }],
        }];
        assert_eq!(
            lines(&encode(&families)),
            vec![
                "# HELP arbor_escaped_total back\\\\slash and\\nnewline",
                "# TYPE arbor_escaped_total counter",
                "arbor_escaped_total{v=\"a\\\"b\\\\c\\nd\"} 1",
            ]
        );
    }

    #[test]
    fn special_floats_use_prometheus_spellings() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(10.0), "10");
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample_with_a_numeric_value() {
        let registry = Registry::new();
        let latency = registry
            .histogram_vec(
                "arbor_all_seconds",
                "All.",
                &["method"],
                crate::LATENCY_BUCKETS_SECONDS,
            )
            .unwrap();
        latency.with(&["a"]).observe(0.003);
        registry
            .counter_vec("arbor_all_total", "All.", &["k", "j"])
            .unwrap()
            .with(&["x", "y"])
            .inc();
        for line in registry.render().lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            assert!(series.starts_with("arbor_all_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
