//! The functions' metrics: each handler's Embedded Metric Format lines, and the dashboard and
//! alarms in `template.yaml`, which must name exactly the metrics and dimensions the functions
//! publish, or CloudWatch shows empty graphs and alarms that never fire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{Duration, Utc};
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, OutboundWrite, RecordKey, SystemId, Wire};
use fieldsync_embedded::{EmbeddedQueue, EmbeddedStore, QueueSettings};
use fieldsync_lambda::metrics::{MetricsSink, CATALOGUE, NAMESPACE};
use fieldsync_lambda::receiver::{self, Receiver};
use fieldsync_pipeline::Reconciler;
use fieldsync_tests::{api_gateway_request, rules, shopify_receiver, shopify_signature, UnavailableQueue};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;

const SECRET: &str = "shpss_metrics_test";
const ORDER: &[u8] = br#"{"id":1,"email":"ada@example.test","updated_at":"2025-06-01T10:00:00Z"}"#;

/// One metric of one EMF line: its name, its dimension values, and its value.
#[derive(Debug, Clone, PartialEq)]
struct Emitted {
    name: String,
    dimensions: BTreeMap<String, String>,
    value: Value,
}

/// Parses EMF lines, failing on anything CloudWatch would not turn into the catalogue's metrics.
fn parse_emf(lines: &[String]) -> Vec<Emitted> {
    lines
        .iter()
        .map(|line| {
            let document: Value = serde_json::from_str(line).unwrap();
            let aws = &document["_aws"];
            assert!(aws["Timestamp"].as_i64().unwrap() > 0, "{line}");
            let directives = aws["CloudWatchMetrics"].as_array().unwrap();
            assert_eq!(directives.len(), 1, "{line}");
            let directive = &directives[0];
            assert_eq!(directive["Namespace"], NAMESPACE, "{line}");
            let metrics = directive["Metrics"].as_array().unwrap();
            assert_eq!(metrics.len(), 1, "{line}");
            let name = metrics[0]["Name"].as_str().unwrap().to_owned();
            let spec = CATALOGUE
                .iter()
                .find(|spec| spec.name == name)
                .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
            let sets: Vec<Vec<String>> = serde_json::from_value(directive["Dimensions"].clone()).unwrap();
            let expected: Vec<Vec<String>> = spec
                .dimension_sets
                .iter()
                .map(|set| set.iter().map(|name| (*name).to_owned()).collect())
                .collect();
            assert_eq!(sets, expected, "{line}");
            let dimensions: BTreeMap<String, String> = sets[0]
                .iter()
                .map(|dimension| {
                    let value = document[dimension.as_str()].as_str();
                    (
                        dimension.clone(),
                        value.unwrap_or_else(|| panic!("{line} lacks {dimension}")).to_owned(),
                    )
                })
                .collect();
            let value = document[name.as_str()].clone();
            assert!(value.is_number() || value.is_array(), "{line}");
            Emitted {
                name,
                dimensions,
                value,
            }
        })
        .collect()
}

fn dims(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn emitted(name: &str, pairs: &[(&str, &str)], value: Value) -> Emitted {
    Emitted {
        name: name.to_owned(),
        dimensions: dims(pairs),
        value,
    }
}

async fn receiver_metrics(mut receiver: Receiver, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<Emitted>) {
    let (sink, lines) = MetricsSink::memory();
    receiver.metrics = sink;
    let response = receiver::handle(&receiver, api_gateway_request(body, headers, false))
        .await
        .unwrap();
    let lines = lines.lock().unwrap().clone();
    (response.status().as_u16(), parse_emf(&lines))
}

const STOREFRONT: [(&str, &str); 2] = [("Integration", "demo"), ("System", "storefront")];

#[tokio::test]
async fn receiver_metrics_per_outcome() {
    let queue = || Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let good = shopify_signature(SECRET, ORDER);
    let received = emitted("WebhooksReceived", &STOREFRONT, 1.into());

    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", good.as_str()),
    ];
    let (status, metrics) = receiver_metrics(shopify_receiver(queue(), SECRET), &headers, ORDER).await;
    assert_eq!(status, 200);
    assert_eq!(
        metrics,
        [received.clone(), emitted("ChangesEnqueued", &STOREFRONT, 1.into())]
    );

    let wrong = shopify_signature("another secret", ORDER);
    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", wrong.as_str()),
    ];
    let (status, metrics) = receiver_metrics(shopify_receiver(queue(), SECRET), &headers, ORDER).await;
    assert_eq!(status, 401);
    let by_reason = [STOREFRONT[0], STOREFRONT[1], ("Reason", "signature")];
    assert_eq!(
        metrics,
        [received.clone(), emitted("WebhooksRejected", &by_reason, 1.into())]
    );

    let body = b"{\"id\": 1, ";
    let signature = shopify_signature(SECRET, body);
    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", signature.as_str()),
    ];
    let (status, metrics) = receiver_metrics(shopify_receiver(queue(), SECRET), &headers, body).await;
    assert_eq!(status, 400);
    let by_reason = [STOREFRONT[0], STOREFRONT[1], ("Reason", "malformed")];
    assert_eq!(
        metrics,
        [received.clone(), emitted("WebhooksRejected", &by_reason, 1.into())]
    );

    let headers = [
        ("x-shopify-topic", "carts/update"),
        ("x-shopify-hmac-sha256", good.as_str()),
    ];
    let (status, metrics) = receiver_metrics(shopify_receiver(queue(), SECRET), &headers, ORDER).await;
    assert_eq!(status, 200);
    assert_eq!(
        metrics,
        [received.clone(), emitted("WebhooksIgnored", &STOREFRONT, 1.into())]
    );

    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", good.as_str()),
    ];
    let receiver = shopify_receiver(Arc::new(UnavailableQueue), SECRET);
    let (status, metrics) = receiver_metrics(receiver, &headers, ORDER).await;
    assert_eq!(status, 503);
    assert_eq!(metrics, [received, emitted("EnqueueFailures", &STOREFRONT, 1.into())]);
}

/// Accepts every write, as a healthy storefront does.
#[derive(Debug)]
struct Accepting;

#[async_trait]
impl SystemClient for Accepting {
    async fn write(&self, _: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        Ok(WriteReceipt {
            target_id: Some("gid://shopify/Product/1".into()),
        })
    }
}

/// Refuses every write as invalid, as an ERP does with a value its validation rejects.
#[derive(Debug)]
struct Refusing;

#[async_trait]
impl SystemClient for Refusing {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        Err(SystemError::Rejected {
            system: write.target.clone(),
            record: write.record.clone(),
            message: "field too long".into(),
        })
    }
}

fn change(source: &str, event_id: &str, age: Duration, fields: &[(&str, &str)]) -> ChangeSet {
    let now = Utc::now();
    ChangeSet {
        record: RecordKey::new("demo", "product", "MUG-RED"),
        source: SystemId::new(source),
        event_id: event_id.into(),
        occurred_at: now - age,
        received_at: now,
        external_id: None,
        fields: fields
            .iter()
            .map(|(name, json)| ((*name).into(), Wire::parse(json.as_bytes()).unwrap()))
            .collect(),
    }
}

fn sqs_event(changes: &[ChangeSet]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = changes
        .iter()
        .enumerate()
        .map(|(index, change)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("message-{index}"));
            message.body = Some(fieldsync_pipeline::message::encode(change).unwrap().body);
            message
        })
        .collect();
    event
}

#[tokio::test]
async fn reconciler_metrics_per_batch() {
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::from([
        (
            SystemId::new("storefront"),
            Arc::new(Accepting) as Arc<dyn SystemClient>,
        ),
        (SystemId::new("erp"), Arc::new(Refusing) as Arc<dyn SystemClient>),
    ]);
    let reconciler = Reconciler::new(Arc::new(rules()), Arc::new(EmbeddedStore::new()), systems);
    let (sink, lines) = MetricsSink::memory();

    // The ERP creates the item, so one create goes to the storefront 2 s after the change. Then
    // the storefront edits the meta description, which flows to the ERP, and the ERP rejects it.
    let changes = [
        change(
            "erp",
            "erp-1",
            Duration::seconds(2),
            &[("name", r#""Red mug""#), ("price", r#""19.99""#)],
        ),
        change(
            "storefront",
            "sf-1",
            Duration::zero(),
            &[("meta_description", r#""A red mug""#)],
        ),
    ];
    let event = LambdaEvent::new(sqs_event(&changes), Context::default());
    let response = fieldsync_lambda::reconciler::handle(&reconciler, &sink, event)
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());

    let metrics = parse_emf(&lines.lock().unwrap());
    let value = |name: &str, pairs: &[(&str, &str)]| {
        metrics
            .iter()
            .find(|metric| metric.name == name && metric.dimensions == dims(pairs))
            .map(|metric| metric.value.clone())
    };
    let demo = ("Integration", "demo");
    assert_eq!(value("Decisions", &[demo, ("Outcome", "create")]), Some(2.into()));
    assert_eq!(value("Decisions", &[demo, ("Outcome", "apply")]), Some(1.into()));
    assert_eq!(value("ConflictsRetried", &[demo]), Some(0.into()));
    assert_eq!(value("MessagesFailed", &[demo]), Some(0.into()));
    let storefront_ok = [demo, ("Target", "storefront"), ("Status", "ok")];
    assert_eq!(value("OutboundWrites", &storefront_ok), Some(1.into()));
    let erp_rejected = [demo, ("Target", "erp"), ("Status", "rejected")];
    assert_eq!(value("OutboundWrites", &erp_rejected), Some(1.into()));
    let lag = value("EndToEndLag", &[demo, ("Target", "storefront")]).unwrap();
    let lag_ms = lag.as_f64().unwrap();
    assert!((2_000.0..60_000.0).contains(&lag_ms), "lag {lag_ms} ms");
    assert_eq!(
        value("EndToEndLag", &[demo, ("Target", "erp")]),
        None,
        "a refused write has no lag"
    );
}

/// A metric as a dashboard or alarm names it: name and the set of dimension names.
type MetricId = (String, BTreeSet<String>);

fn catalogue_ids() -> BTreeSet<MetricId> {
    CATALOGUE
        .iter()
        .flat_map(|spec| {
            spec.dimension_sets.iter().map(|set| {
                (
                    spec.name.to_owned(),
                    set.iter().map(|name| (*name).to_owned()).collect(),
                )
            })
        })
        .collect()
}

fn template() -> serde_yaml::Value {
    let path = format!("{}/../template.yaml", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Returns a `!Sub` string's text, or a plain string.
fn text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::Tagged(tagged) => text(&tagged.value),
        other => other.as_str().unwrap().to_owned(),
    }
}

/// Reads the metrics a dashboard's widgets show from the namespace: explicit metric rows, and
/// SEARCH expressions of the form `{Namespace,Dim,…} MetricName="…"`.
fn dashboard_ids(body: &Value) -> BTreeSet<MetricId> {
    let mut ids = BTreeSet::new();
    for widget in body["widgets"].as_array().unwrap() {
        for row in widget["properties"]["metrics"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            if let Some(expression) = row[0].get("expression").and_then(Value::as_str) {
                let Some(schema) = expression.split_once("SEARCH('{").map(|(_, rest)| rest) else {
                    continue;
                };
                let (schema, rest) = schema.split_once('}').unwrap();
                let mut parts = schema.split(',');
                if parts.next() != Some(NAMESPACE) {
                    continue;
                }
                let dimensions = parts.map(str::to_owned).collect();
                let name = rest.split('"').nth(1).unwrap().to_owned();
                assert!(rest.contains("MetricName="), "{expression}");
                ids.insert((name, dimensions));
            } else if row[0] == NAMESPACE {
                assert_ne!(row[1], ".", "shorthand rows hide which metric is meant");
                let name = row[1].as_str().unwrap().to_owned();
                let dimensions = row[2..]
                    .iter()
                    .take_while(|item| item.is_string())
                    .step_by(2)
                    .map(|item| item.as_str().unwrap().to_owned())
                    .collect();
                ids.insert((name, dimensions));
            }
        }
    }
    ids
}

fn alarm_ids(alarm: &serde_yaml::Value) -> Vec<MetricId> {
    let properties = &alarm["Properties"];
    let mut metrics: Vec<&serde_yaml::Value> = Vec::new();
    if properties.get("MetricName").is_some() {
        metrics.push(properties);
    }
    if let Some(queries) = properties["Metrics"].as_sequence() {
        metrics.extend(
            queries
                .iter()
                .filter_map(|query| query.get("MetricStat").map(|stat| &stat["Metric"])),
        );
    }
    metrics
        .into_iter()
        .filter(|metric| metric["Namespace"].as_str() == Some(NAMESPACE))
        .map(|metric| {
            let dimensions = metric["Dimensions"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|dimension| dimension["Name"].as_str().unwrap().to_owned())
                .collect();
            (metric["MetricName"].as_str().unwrap().to_owned(), dimensions)
        })
        .collect()
}

#[test]
fn dashboard_matches_catalogue() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let dashboards: Vec<&serde_yaml::Value> = resources
        .values()
        .filter(|resource| resource["Type"] == "AWS::CloudWatch::Dashboard")
        .collect();
    assert_eq!(dashboards.len(), 1);
    let body: Value = serde_json::from_str(&text(&dashboards[0]["Properties"]["DashboardBody"])).unwrap();
    let shown = dashboard_ids(&body);
    let published = catalogue_ids();
    let unknown: Vec<_> = shown.difference(&published).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard shows metrics no function publishes: {unknown:?}"
    );
    let missing: Vec<_> = published.difference(&shown).collect();
    assert!(missing.is_empty(), "the dashboard lacks published metrics: {missing:?}");

    let sqs_rows = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|widget| widget["properties"]["metrics"].as_array().unwrap())
        .filter(|row| row[0] == "AWS/SQS")
        .count();
    assert!(sqs_rows >= 3, "queue depth, oldest message age and dead-letter depth");
}

#[test]
fn alarms_use_catalogue_metrics() {
    let template = template();
    let published = catalogue_ids();
    let mut watched = 0;
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        for id in alarm_ids(resource) {
            assert!(
                published.contains(&id),
                "alarm {name:?} watches {id:?}, which no function publishes"
            );
            watched += 1;
        }
    }
    assert!(
        watched >= 9,
        "signature rate, outbound error rate and silence alarms read fieldsync metrics"
    );
}
