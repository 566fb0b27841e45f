//! Reads of thin-notice resources remembered across batches of one process, so a burst of
//! notices about one resource that arrives in several batches costs one read.
//!
//! A read that started after a notice was received returns the resource as it was after the
//! notice's event: the source sends its webhook only once the change is made. Such a notice is
//! covered by the read and needs none of its own. A read counts only once every change it
//! returned was applied, so a notice redelivered after a failed batch is read again.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use fieldsync_core::{Notice, NoticeKind, SystemId};

/// Slack between a notice's receipt and a read that covers it, for sources whose read API
/// lags their webhooks by a moment.
const MARGIN: Duration = Duration::seconds(1);

/// How long a read is remembered, and how many resources at most.
const KEPT: Duration = Duration::minutes(10);
const MAX_RESOURCES: usize = 10_000;

/// Start times of the latest applied read per source and resource.
#[derive(Debug, Default)]
pub(crate) struct RecentReads {
    started: Mutex<HashMap<(SystemId, String), DateTime<Utc>>>,
}

impl RecentReads {
    /// Tells whether an applied read of the notice's resource started after the notice arrived.
    /// Collection and deletion notices are never covered: they name many records or none.
    pub(crate) fn covers(&self, notice: &Notice) -> bool {
        if matches!(notice.kind, NoticeKind::Collection | NoticeKind::Deleted) {
            return false;
        }
        let Ok(started) = self.started.lock() else {
            return false;
        };
        started
            .get(&(notice.source.clone(), notice.resource.clone()))
            .is_some_and(|read_at| *read_at >= notice.received_at + MARGIN)
    }

    /// Remembers an applied read of `resource` that started at `read_at`.
    pub(crate) fn remember(&self, source: &SystemId, resource: &str, read_at: DateTime<Utc>) {
        let Ok(mut started) = self.started.lock() else {
            return;
        };
        if started.len() >= MAX_RESOURCES {
            let oldest_kept = Utc::now() - KEPT;
            started.retain(|_, at| *at >= oldest_kept);
            if started.len() >= MAX_RESOURCES {
                started.clear();
            }
        }
        let entry = started.entry((source.clone(), resource.to_owned())).or_insert(read_at);
        *entry = (*entry).max(read_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(received_at: DateTime<Utc>, kind: NoticeKind) -> Notice {
        Notice {
            integration: "demo".into(),
            source: SystemId::new("storefront"),
            entity: "product".into(),
            resource: "catalog/products/206".into(),
            kind,
            event_id: "e".into(),
            occurred_at: received_at,
            received_at,
        }
    }

    #[test]
    fn read_started_after_receipt_covers_notice() {
        let reads = RecentReads::default();
        let received = Utc::now();
        let earlier = notice(received, NoticeKind::Updated);
        assert!(!reads.covers(&earlier));

        reads.remember(
            &SystemId::new("storefront"),
            "catalog/products/206",
            received + Duration::seconds(2),
        );
        assert!(reads.covers(&earlier));
        let later = notice(received + Duration::seconds(5), NoticeKind::Updated);
        assert!(!reads.covers(&later), "a notice received after the read needs a read");
        let within_margin = notice(received + Duration::milliseconds(1500), NoticeKind::Updated);
        assert!(!reads.covers(&within_margin));
        assert!(!reads.covers(&notice(received, NoticeKind::Collection)));
    }
}
