//! The concurrency governor on the record store's DynamoDB table: one item per slot.
//!
//! Slot `n` of scope `s` is the item `pk = GOV#s`, `sk = SLOT#n` with the attributes `holder`,
//! `expires_at` (Unix milliseconds when the lease ends) and `ttl` (Unix seconds, a minute after
//! the lease ends, so DynamoDB's TTL removes slots that were never released). Acquiring puts the item on
//! the condition that it is absent or its lease has ended; releasing deletes it on the condition
//! that it still carries the holder and lease end of the permit. A failed condition means
//! "slot taken" or "slot already taken over", never an error. Only PutItem and DeleteItem are
//! called, on the same table as the records.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use fieldsync_core::ports::{ConcurrencyGovernor, Permit, StoreError};
use rand::seq::SliceRandom;
use tracing::debug;

use crate::boxed;
use crate::items::{self, PK, TTL};

const HOLDER: &str = "holder";
const EXPIRES_AT: &str = "expires_at";

/// How long after its lease ends an unreleased slot item stays before DynamoDB's TTL may delete
/// it. The condition on `expires_at` frees the slot at once; the TTL only removes the item.
const SLOT_RETENTION: chrono::Duration = chrono::Duration::minutes(1);

/// A concurrency governor whose slots are items of a [`crate::DynamoStore`] table, shared by
/// every Lambda instance and process that uses the table.
#[derive(Debug, Clone)]
pub struct DynamoGovernor {
    client: Client,
    table: String,
}

impl DynamoGovernor {
    /// Creates a governor on `table`, normally the record store's table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Puts the slot item if the slot is free, and returns whether it did.
    async fn try_slot(
        &self,
        scope: &str,
        slot: u32,
        holder: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = items::key(items::governor_pk(scope), &items::governor_sk(slot));
        item.insert(HOLDER.to_owned(), AttributeValue::S(holder.to_owned()));
        item.insert(EXPIRES_AT.to_owned(), millis(expires_at));
        item.insert(TTL.to_owned(), items::epoch_seconds(expires_at + SLOT_RETENTION));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires_at < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":now", millis(now))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(false)
            }
            Err(error) => Err(StoreError::Unavailable { source: boxed(error) }),
        }
    }
}

#[async_trait]
impl ConcurrencyGovernor for DynamoGovernor {
    async fn acquire(
        &self,
        scope: &str,
        limit: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Permit>, StoreError> {
        let now = Utc::now();
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let expires_at = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);

        // Trying the slots in random order spreads concurrent callers over the slots, so most
        // first attempts succeed instead of every caller racing for slot 0.
        let mut slots: Vec<u32> = (0..limit).collect();
        slots.shuffle(&mut rand::thread_rng());
        for slot in slots {
            if self.try_slot(scope, slot, holder, now, expires_at).await? {
                return Ok(Some(Permit {
                    scope: scope.to_owned(),
                    slot,
                    holder: holder.to_owned(),
                    expires_at,
                }));
            }
        }
        debug!(scope, limit, "every concurrency slot is held");
        Ok(None)
    }

    async fn release(&self, permit: &Permit) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(items::key(
                items::governor_pk(&permit.scope),
                &items::governor_sk(permit.slot),
            )))
            .condition_expression("#holder = :holder AND #expires_at = :expires_at")
            .expression_attribute_names("#holder", HOLDER)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":holder", AttributeValue::S(permit.holder.clone()))
            .expression_attribute_values(":expires_at", millis(permit.expires_at))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(DeleteItemError::is_conditional_check_failed_exception) =>
            {
                debug!(
                    scope = permit.scope,
                    slot = permit.slot,
                    "slot was taken over after its lease ended"
                );
                Ok(())
            }
            Err(error) => Err(StoreError::Unavailable { source: boxed(error) }),
        }
    }
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}
