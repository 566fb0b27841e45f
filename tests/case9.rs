//! Case 9, money typed loosely, through the real receiver and reconciler: a PHP-style sender
//! (described by a connector file) sends `regular_price` as a number, `sale_price` as `""` and
//! `price` as a string, then an invalid amount.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use fieldsync_core::formats::generic::GenericFormat;
use fieldsync_core::ports::{Queue, SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ConnectorFile, FieldValue, OutboundWrite, Outcome, RecordKey, Rules, Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, EmbeddedStore, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::Reconciler;
use fieldsync_tests::{api_gateway_request, shopify_signature, status_and_body};
use lambda_runtime::{Context, LambdaEvent};

const SECRET: &str = "wc_case9_secret";

const CONNECTOR: &str = r#"
connector = "php-shop"

[webhook.signature]
scheme = "hmac-sha256"
header = "X-WC-Webhook-Signature"
encoding = "base64"
signed = "{body}"

[[webhook.entities]]
entity = "product"
key = "/id"

[webhook.entities.fields]
regular_price = "/regular_price"
sale_price = "/sale_price"
price = "/price"

[auth_header]
name = "Authorization"
value = "Bearer {token}"

[write.product]
update = { method = "PUT", url = "{base_url}/products/{id}" }
money = "string"

[write.product.body]
"/price" = "price"
"#;

const RULES: &str = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.product]
key = "id"
[entities.product.fields.regular_price]
type = "money"
scale = 2
owner = "storefront"
sync_to = ["erp"]
[entities.product.fields.sale_price]
type = "money"
scale = 2
owner = "storefront"
sync_to = ["erp"]
[entities.product.fields.price]
type = "money"
scale = 2
owner = "storefront"
sync_to = ["erp"]
"#;

/// Records every write the ERP receives.
#[derive(Debug, Default)]
struct RecordingErp {
    writes: Mutex<Vec<OutboundWrite>>,
}

#[async_trait]
impl SystemClient for RecordingErp {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        self.writes.lock().unwrap().push(write.clone());
        Ok(WriteReceipt {
            target_id: Some(write.record.key.clone()),
        })
    }
}

#[tokio::test]
async fn loose_money_is_read_per_field() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let connector = Arc::new(ConnectorFile::parse("php-shop.toml", CONNECTOR).unwrap());
    let receiver = Receiver {
        integration: "demo".into(),
        format: Arc::new(GenericFormat {
            integration: "demo".into(),
            source: SystemId::new("storefront"),
            secrets: vec![Secret::new(SECRET)],
            connector,
        }),
        queue: queue.clone(),
        metrics: MetricsSink::Off,
    };
    for body in [
        br#"{"id":7003,"regular_price":5,"sale_price":"","price":"4.50"}"#.as_slice(),
        br#"{"id":7004,"regular_price":"1..23"}"#.as_slice(),
    ] {
        let signature = shopify_signature(SECRET, body);
        let headers = [
            ("content-type", "application/json"),
            ("x-wc-webhook-signature", signature.as_str()),
        ];
        let response = handle(&receiver, api_gateway_request(body, &headers, false))
            .await
            .unwrap();
        assert_eq!(status_and_body(&response).0, 200, "{}", String::from_utf8_lossy(body));
    }

    let erp = Arc::new(RecordingErp::default());
    let store = Arc::new(EmbeddedStore::new());
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> =
        BTreeMap::from([(SystemId::new("erp"), erp.clone() as Arc<dyn SystemClient>)]);
    let reconciler = Reconciler::new(
        Arc::new(Rules::parse("rules.toml", RULES).unwrap()),
        store.clone(),
        systems,
    );
    let messages = queue.receive(10).await.unwrap();
    assert_eq!(messages.len(), 2);
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|message| {
            let mut record = SqsMessage::default();
            record.message_id = Some(message.message_id.clone());
            record.body = Some(message.body.clone());
            record
        })
        .collect();
    let response = fieldsync_lambda::reconciler::handle(
        &reconciler,
        &MetricsSink::Off,
        LambdaEvent::new(event, Context::default()),
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty());

    // 7003: the number and the string are both money at the currency's scale, and "" is absent.
    let writes = erp.writes.lock().unwrap().clone();
    let first = writes.iter().find(|write| write.record.key == "7003").unwrap();
    let money = |field: &str| first.fields.get(&field.into()).cloned();
    assert_eq!(money("regular_price"), Some(FieldValue::Money("5.00".parse().unwrap())));
    assert_eq!(money("price"), Some(FieldValue::Money("4.50".parse().unwrap())));
    assert_eq!(money("sale_price"), None, "an empty string is no value");

    // 7004: the invalid amount is rejected for its field, with the value in the reason.
    use fieldsync_core::ports::RecordStore as _;
    let decisions = store
        .decisions(&RecordKey::new("demo", "product", "7004"))
        .await
        .unwrap();
    let rejected = decisions
        .iter()
        .find(|decision| decision.field.as_str() == "regular_price")
        .unwrap();
    assert_eq!(rejected.outcome, Outcome::Rejected);
    assert!(rejected.reason.contains("1..23"), "{}", rejected.reason);
    assert!(
        writes.iter().all(|write| write.record.key != "7004"),
        "nothing valid to write for 7004"
    );
}
