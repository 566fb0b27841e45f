//! Thin notices: the reconciler reads what they name through the source's connector, once per
//! resource and batch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, EntityType, Notice, NoticeKind, OutboundWrite, RecordKey, Rules, SystemId, Wire};
use fieldsync_embedded::EmbeddedStore;
use fieldsync_pipeline::{message, BatchItem, Reconciler};

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

/// An ERP whose every read returns MUG-RED at 19.99, counting the reads.
#[derive(Debug, Default)]
struct ThinErp {
    reads: AtomicU32,
}

#[async_trait]
impl SystemClient for ThinErp {
    async fn write(&self, _: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        Ok(WriteReceipt::default())
    }

    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(vec![ChangeSet {
            record: RecordKey::new("demo", "product", "MUG-RED"),
            source: notice.source.clone(),
            event_id: notice.event_id.clone(),
            occurred_at: notice.occurred_at,
            received_at: notice.received_at,
            external_id: Some("item-1".into()),
            fields: BTreeMap::from([("price".into(), Wire::parse(b"19.99").unwrap())]),
        }])
    }
}

#[derive(Debug, Default)]
struct Storefront {
    writes: AtomicU32,
}

#[async_trait]
impl SystemClient for Storefront {
    async fn write(&self, _: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(WriteReceipt {
            target_id: Some("1".into()),
        })
    }
}

fn notice(event: &str, seconds: i64) -> BatchItem {
    let now = Utc::now();
    let notice = Notice {
        integration: "demo".into(),
        source: SystemId::new("erp"),
        entity: EntityType::new("product"),
        resource: "api/v2.0/companies(1)/items(item-1)".into(),
        kind: NoticeKind::Updated,
        event_id: event.into(),
        occurred_at: now + chrono::Duration::seconds(seconds),
        received_at: now,
    };
    BatchItem {
        message_id: format!("m-{event}"),
        body: message::encode_notice(&notice).unwrap().body,
    }
}

#[tokio::test]
async fn notices_of_one_resource_share_one_read() {
    let erp = Arc::new(ThinErp::default());
    let storefront = Arc::new(Storefront::default());
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::from([
        (SystemId::new("erp"), erp.clone() as Arc<dyn SystemClient>),
        (SystemId::new("storefront"), storefront.clone() as Arc<dyn SystemClient>),
    ]);
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let reconciler = Reconciler::new(rules, Arc::new(EmbeddedStore::new()), systems);

    let report = reconciler
        .process_batch(&[notice("bc-1", 0), notice("bc-2", 1), notice("bc-3", 2)])
        .await;

    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(erp.reads.load(Ordering::SeqCst), 1, "three notices, one read");
    assert_eq!(
        storefront.writes.load(Ordering::SeqCst),
        1,
        "one create on the storefront"
    );
}

#[tokio::test]
async fn deleted_notice_reads_nothing() {
    let erp = Arc::new(ThinErp::default());
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> =
        BTreeMap::from([(SystemId::new("erp"), erp.clone() as Arc<dyn SystemClient>)]);
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let reconciler = Reconciler::new(rules, Arc::new(EmbeddedStore::new()), systems);
    let mut item = notice("bc-9", 0);
    item.body = item.body.replace("\"updated\"", "\"deleted\"");

    let report = reconciler.process_batch(&[item]).await;

    assert!(report.failed.is_empty());
    assert_eq!(erp.reads.load(Ordering::SeqCst), 0);
}

/// Builds a queued notice of item-1 that was received `received_secs_ago` seconds ago.
fn notice_received(event: &str, received_secs_ago: i64) -> BatchItem {
    let received_at = Utc::now() - chrono::Duration::seconds(received_secs_ago);
    let notice = Notice {
        integration: "demo".into(),
        source: SystemId::new("erp"),
        entity: EntityType::new("product"),
        resource: "api/v2.0/companies(1)/items(item-1)".into(),
        kind: NoticeKind::Updated,
        event_id: event.into(),
        occurred_at: received_at,
        received_at,
    };
    BatchItem {
        message_id: format!("m-{event}"),
        body: message::encode_notice(&notice).unwrap().body,
    }
}

#[tokio::test]
async fn read_covers_earlier_notices_later() {
    let erp = Arc::new(ThinErp::default());
    let storefront = Arc::new(Storefront::default());
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::from([
        (SystemId::new("erp"), erp.clone() as Arc<dyn SystemClient>),
        (SystemId::new("storefront"), storefront.clone() as Arc<dyn SystemClient>),
    ]);
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let reconciler = Reconciler::new(rules, Arc::new(EmbeddedStore::new()), systems);

    let first = reconciler.process_batch(&[notice_received("bc-1", 10)]).await;
    assert!(first.failed.is_empty(), "{first:?}");
    assert_eq!(erp.reads.load(Ordering::SeqCst), 1);

    // Received before the first read started: that read already returned its change.
    let covered = reconciler.process_batch(&[notice_received("bc-2", 5)]).await;
    assert!(covered.failed.is_empty(), "{covered:?}");
    assert_eq!(erp.reads.load(Ordering::SeqCst), 1, "a notice the read covered");

    // Received after it: the resource may have changed since, so it is read again.
    let fresh = reconciler.process_batch(&[notice_received("bc-3", -5)]).await;
    assert!(fresh.failed.is_empty(), "{fresh:?}");
    assert_eq!(erp.reads.load(Ordering::SeqCst), 2);
}

/// A storefront whose writes fail while `failing` is set.
#[derive(Debug, Default)]
struct FailingStorefront {
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SystemClient for FailingStorefront {
    async fn write(&self, _: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SystemError::Unavailable {
                system: SystemId::new("storefront"),
                source: "down".into(),
            });
        }
        Ok(WriteReceipt {
            target_id: Some("1".into()),
        })
    }
}

#[tokio::test]
async fn read_of_failed_batch_covers_nothing() {
    let erp = Arc::new(ThinErp::default());
    let storefront = Arc::new(FailingStorefront::default());
    storefront.failing.store(true, Ordering::SeqCst);
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::from([
        (SystemId::new("erp"), erp.clone() as Arc<dyn SystemClient>),
        (SystemId::new("storefront"), storefront.clone() as Arc<dyn SystemClient>),
    ]);
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let reconciler = Reconciler::new(rules, Arc::new(EmbeddedStore::new()), systems);

    let failed = reconciler.process_batch(&[notice_received("bc-1", 10)]).await;
    assert_eq!(failed.failed, ["m-bc-1"]);

    // The redelivery is read again, because the first read's change may not have been applied.
    storefront.failing.store(false, Ordering::SeqCst);
    let redelivered = reconciler.process_batch(&[notice_received("bc-1", 10)]).await;
    assert!(redelivered.failed.is_empty(), "{redelivered:?}");
    assert_eq!(erp.reads.load(Ordering::SeqCst), 2);
}
