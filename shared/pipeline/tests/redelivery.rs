//! A write that failed is sent when SQS redelivers its message, although the change itself was
//! already decided and stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, OutboundWrite, RecordKey, Rules, SystemId, Wire};
use fieldsync_embedded::EmbeddedStore;
use fieldsync_pipeline::{message, BatchItem, Reconciler, WriteStatus};

const RULES: &str = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.product]
key = "sku"
[entities.product.fields.price]
type = "money"
scale = 2
owner = "erp"
sync_to = ["storefront"]
"#;

/// Fails the first `outages` writes as unreachable, then accepts.
#[derive(Debug)]
struct FlakyStorefront {
    outages: AtomicU32,
    accepted: AtomicU32,
}

#[async_trait]
impl SystemClient for FlakyStorefront {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        if self
            .outages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok()
        {
            return Err(SystemError::Unavailable {
                system: write.target.clone(),
                source: "connection refused".into(),
            });
        }
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(WriteReceipt {
            target_id: Some("1".into()),
        })
    }
}

#[tokio::test]
async fn redelivered_message_sends_the_write_that_failed() {
    let storefront = Arc::new(FlakyStorefront {
        outages: AtomicU32::new(1),
        accepted: AtomicU32::new(0),
    });
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> =
        BTreeMap::from([(SystemId::new("storefront"), storefront.clone() as Arc<dyn SystemClient>)]);
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let reconciler = Reconciler::new(rules, Arc::new(EmbeddedStore::new()), systems);

    let now = Utc::now();
    let change = ChangeSet {
        record: RecordKey::new("demo", "product", "MUG-RED"),
        source: SystemId::new("erp"),
        event_id: "erp-1".into(),
        occurred_at: now,
        received_at: now,
        external_id: None,
        fields: BTreeMap::from([("price".into(), Wire::parse(b"\"19.99\"").unwrap())]),
    };
    let item = BatchItem {
        message_id: "m-1".into(),
        body: message::encode(&change).unwrap().body,
    };

    let first = reconciler.process_batch(std::slice::from_ref(&item)).await;
    assert_eq!(first.failed, ["m-1"], "the failed write fails its message");
    assert_eq!(
        first.outbound.get(&(SystemId::new("storefront"), WriteStatus::Failed)),
        Some(&1)
    );

    let second = reconciler.process_batch(std::slice::from_ref(&item)).await;
    assert!(second.failed.is_empty(), "{second:?}");
    assert!(
        second.decisions.is_empty(),
        "the change is not decided twice: {second:?}"
    );
    assert_eq!(storefront.accepted.load(Ordering::SeqCst), 1);

    let third = reconciler.process_batch(std::slice::from_ref(&item)).await;
    assert!(third.failed.is_empty());
    assert_eq!(storefront.accepted.load(Ordering::SeqCst), 1, "nothing is sent twice");
}
