//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON object per line on standard
//! output, which Lambda sends to CloudWatch Logs and CloudWatch turns into metrics, with no API
//! call on the request path.
//!
//! [`CATALOGUE`] lists every metric with its unit and dimension sets. The dashboard and alarms in
//! `template.yaml` must use exactly these names and dimensions; a test in this crate reads the
//! template and checks both directions.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use fieldsync_core::SystemId;
use fieldsync_pipeline::{BatchReport, Received};
use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every fieldsync metric.
pub const NAMESPACE: &str = "Fieldsync";

/// EMF accepts at most 100 values for one metric in one document.
const MAX_VALUES_PER_DOCUMENT: usize = 100;

/// The unit CloudWatch stores with a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric's name, unit and the dimension sets it is published under.
#[derive(Debug)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: Unit,
    /// Every set is a subset of the first, which lists all dimensions a sample carries.
    pub dimension_sets: &'static [&'static [&'static str]],
}

const INTEGRATION: &[&str] = &["Integration"];
const BY_SYSTEM: &[&str] = &["Integration", "System"];

pub const WEBHOOKS_RECEIVED: MetricSpec = MetricSpec {
    name: "WebhooksReceived",
    unit: Unit::Count,
    dimension_sets: &[BY_SYSTEM],
};
pub const WEBHOOKS_REJECTED: MetricSpec = MetricSpec {
    name: "WebhooksRejected",
    unit: Unit::Count,
    dimension_sets: &[&["Integration", "System", "Reason"], BY_SYSTEM],
};
pub const WEBHOOKS_IGNORED: MetricSpec = MetricSpec {
    name: "WebhooksIgnored",
    unit: Unit::Count,
    dimension_sets: &[BY_SYSTEM],
};
pub const CHANGES_ENQUEUED: MetricSpec = MetricSpec {
    name: "ChangesEnqueued",
    unit: Unit::Count,
    dimension_sets: &[BY_SYSTEM],
};
pub const ENQUEUE_FAILURES: MetricSpec = MetricSpec {
    name: "EnqueueFailures",
    unit: Unit::Count,
    dimension_sets: &[BY_SYSTEM],
};
pub const DECISIONS: MetricSpec = MetricSpec {
    name: "Decisions",
    unit: Unit::Count,
    dimension_sets: &[&["Integration", "Outcome"]],
};
pub const CONFLICTS_RETRIED: MetricSpec = MetricSpec {
    name: "ConflictsRetried",
    unit: Unit::Count,
    dimension_sets: &[INTEGRATION],
};
pub const MESSAGES_FAILED: MetricSpec = MetricSpec {
    name: "MessagesFailed",
    unit: Unit::Count,
    dimension_sets: &[INTEGRATION],
};
pub const OUTBOUND_WRITES: MetricSpec = MetricSpec {
    name: "OutboundWrites",
    unit: Unit::Count,
    dimension_sets: &[&["Integration", "Target", "Status"], &["Integration", "Status"]],
};
pub const END_TO_END_LAG: MetricSpec = MetricSpec {
    name: "EndToEndLag",
    unit: Unit::Milliseconds,
    dimension_sets: &[&["Integration", "Target"]],
};

/// Every metric the functions publish.
pub const CATALOGUE: &[&MetricSpec] = &[
    &WEBHOOKS_RECEIVED,
    &WEBHOOKS_REJECTED,
    &WEBHOOKS_IGNORED,
    &CHANGES_ENQUEUED,
    &ENQUEUE_FAILURES,
    &DECISIONS,
    &CONFLICTS_RETRIED,
    &MESSAGES_FAILED,
    &OUTBOUND_WRITES,
    &END_TO_END_LAG,
];

/// Values of one metric under one set of dimension values.
#[derive(Debug, Clone)]
pub struct Sample {
    pub spec: &'static MetricSpec,
    /// Values for the dimensions of the spec's first dimension set.
    pub dimensions: BTreeMap<&'static str, String>,
    /// Counts or durations. EMF numbers are doubles, and these are never money.
    pub values: Vec<f64>,
}

impl Sample {
    fn new(spec: &'static MetricSpec, dimensions: &[(&'static str, &str)], value: f64) -> Self {
        Self {
            spec,
            dimensions: dimensions
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
            values: vec![value],
        }
    }

    /// Renders the sample as EMF documents, one line each.
    pub fn render(&self, at: DateTime<Utc>) -> Vec<String> {
        self.values
            .chunks(MAX_VALUES_PER_DOCUMENT)
            .map(|values| {
                let mut document = Map::new();
                document.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": at.timestamp_millis(),
                        "CloudWatchMetrics": [{
                            "Namespace": NAMESPACE,
                            "Dimensions": self.spec.dimension_sets,
                            "Metrics": [{ "Name": self.spec.name, "Unit": self.spec.unit.as_str() }],
                        }],
                    }),
                );
                for (name, value) in &self.dimensions {
                    document.insert((*name).into(), Value::String(value.clone()));
                }
                let value = match values {
                    [single] => number(*single),
                    many => Value::Array(many.iter().copied().map(number).collect()),
                };
                document.insert(self.spec.name.into(), value);
                Value::Object(document).to_string()
            })
            .collect()
    }
}

/// Writes whole numbers without a fraction, so counts read as counts in the log.
fn number(value: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() < EXACT {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Builds the metrics of one webhook request.
pub fn receiver_samples(integration: &str, system: &SystemId, received: Received) -> Vec<Sample> {
    let dimensions = [("Integration", integration), ("System", system.as_str())];
    let mut samples = vec![Sample::new(&WEBHOOKS_RECEIVED, &dimensions, 1.0)];
    let rejected = |reason| {
        let mut with_reason = dimensions.to_vec();
        with_reason.push(("Reason", reason));
        Sample::new(&WEBHOOKS_REJECTED, &with_reason, 1.0)
    };
    samples.push(match received {
        Received::Enqueued { changes } => Sample::new(&CHANGES_ENQUEUED, &dimensions, changes as f64),
        Received::Ignored => Sample::new(&WEBHOOKS_IGNORED, &dimensions, 1.0),
        Received::RejectedSignature => rejected("signature"),
        Received::RejectedMalformed => rejected("malformed"),
        Received::EnqueueFailed => Sample::new(&ENQUEUE_FAILURES, &dimensions, 1.0),
    });
    samples
}

/// Builds the metrics of one reconciled batch. Conflicts and failed messages are published even when
/// zero, so their graphs show a baseline instead of gaps.
pub fn reconciler_samples(integration: &str, report: &BatchReport) -> Vec<Sample> {
    let base = [("Integration", integration)];
    let mut samples = Vec::new();
    for (outcome, count) in &report.decisions {
        let dimensions = [("Integration", integration), ("Outcome", outcome.as_str())];
        samples.push(Sample::new(&DECISIONS, &dimensions, f64::from(*count)));
    }
    samples.push(Sample::new(
        &CONFLICTS_RETRIED,
        &base,
        f64::from(report.conflicts_retried),
    ));
    samples.push(Sample::new(&MESSAGES_FAILED, &base, report.failed.len() as f64));
    for ((target, status), count) in &report.outbound {
        let dimensions = [
            ("Integration", integration),
            ("Target", target.as_str()),
            ("Status", status.as_str()),
        ];
        samples.push(Sample::new(&OUTBOUND_WRITES, &dimensions, f64::from(*count)));
    }
    let mut lags: BTreeMap<&SystemId, Vec<f64>> = BTreeMap::new();
    for (target, lag) in &report.lags {
        // A source clock ahead of ours gives a negative lag, which is published as zero.
        lags.entry(target)
            .or_default()
            .push(lag.num_milliseconds().max(0) as f64);
    }
    for (target, values) in lags {
        let mut sample = Sample::new(
            &END_TO_END_LAG,
            &[("Integration", integration), ("Target", target.as_str())],
            0.0,
        );
        sample.values = values;
        samples.push(sample);
    }
    samples
}

/// The destination of EMF lines: standard output in Lambda, memory in tests, and none in local
/// runs, whose standard output is the operator's terminal.
#[derive(Debug, Clone, Default)]
pub enum MetricsSink {
    #[default]
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
    Off,
}

impl MetricsSink {
    /// Creates a sink that keeps lines in memory, and returns it with the handle to read them.
    pub fn memory() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Self::Memory(lines.clone()), lines)
    }

    /// Publishes samples. A failed write to standard output loses only these metrics.
    pub fn publish(&self, samples: &[Sample], at: DateTime<Utc>) {
        let lines = samples.iter().flat_map(|sample| sample.render(at));
        match self {
            MetricsSink::Stdout => {
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
            MetricsSink::Memory(kept) => {
                let mut kept = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                kept.extend(lines);
            }
            MetricsSink::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_dimension_sets_are_subsets_of_the_first() {
        for spec in CATALOGUE {
            let all = spec.dimension_sets[0];
            assert_eq!(all[0], "Integration", "{}", spec.name);
            for set in spec.dimension_sets {
                assert!(set.iter().all(|name| all.contains(name)), "{}", spec.name);
            }
        }
    }

    #[test]
    fn lag_splits_into_hundred_value_documents() {
        let mut report = BatchReport::default();
        let target = SystemId::new("erp");
        report.lags = (0..150)
            .map(|ms| (target.clone(), chrono::Duration::milliseconds(ms)))
            .collect();
        let samples = reconciler_samples("demo", &report);
        let lag = samples.iter().find(|sample| sample.spec.name == "EndToEndLag").unwrap();
        let lines = lag.render(Utc::now());
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["EndToEndLag"].as_array().unwrap().len(), 100);
        assert_eq!(first["Target"], "erp");
        assert_eq!(
            first["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
    }
}
