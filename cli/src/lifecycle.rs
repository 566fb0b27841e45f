//! The order-lifecycle story, played against the local stack.
//!
//! a. The ERP creates item MUG-RED, and customer Ada signs up on the storefront.
//! b. Ada requests a quote for ten mugs; the ERP gets it and a task for sales opens.
//! c. Ada tries to convert the quote before sales approved it; the move is rejected.
//! d. Sales prices and approves the quote in the ERP (the manual step); it reaches Ada.
//! e. Ada converts the quote into an order; its webhook arrives twice more.
//! f. The warehouse fulfils the order in the ERP; the shipment appears on the storefront.
//! g. The carrier delivers; then the "shipped" event arrives again, late.
//! h. The mugs arrived damaged: Ada opens a return, which reaches the ERP as an RMA.
//! i. The ERP approves the return and refunds it; the outcome reaches the storefront.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use fieldsync_core::signature::hmac_sha256_base64;
use fieldsync_core::RecordKey;
use fieldsync_local::{LocalOptions, LocalStack, ERP_WEBHOOK_SECRET};
use fieldsync_sandbox::erp::ItemEdit;
use fieldsync_sandbox::{Delivery, Document, DocumentKind};

use crate::demo::{heading, money, play_story, resend, Checks};
use crate::table::print_rows;

const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The records the story follows, by entity and key, in the order they appear.
#[derive(Default)]
struct Tracked {
    records: Vec<(DocumentKind, String)>,
}

/// Runs the story and returns success only when both sandboxes end in the expected state.
pub(crate) async fn run(options: LocalOptions) -> anyhow::Result<ExitCode> {
    play_story(
        options,
        "every record reached its end state on both sides, and nothing was written twice.",
        |stack, checks| Box::pin(play(stack, checks)),
    )
    .await
}

async fn play(stack: &LocalStack, checks: &mut Checks) -> anyhow::Result<()> {
    let mut tracked = Tracked::default();

    heading(
        "a",
        "The ERP creates item MUG-RED, and customer Ada signs up on the storefront",
    );
    stack.erp.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            description: Some("Red mug".to_owned()),
            unit_price: Some(money("12.50")),
            inventory: Some(40),
            ..ItemEdit::default()
        },
    );
    let customer = stack.storefront.create_document_as_user(
        DocumentKind::Customer,
        &[("name", "\"Ada Lovelace\""), ("email", "\"ada@example.test\"")],
    );
    tracked.records.push((DocumentKind::Customer, customer.id.clone()));
    settle_and_print(stack, &tracked).await?;
    let erp_customer = erp_document(stack, DocumentKind::Customer, &customer.id);
    checks.expect(
        "a",
        "ERP customer",
        field(erp_customer.as_ref(), "name"),
        "Ada Lovelace",
    );

    heading("b", "Ada requests a quote for ten red mugs");
    let customer_json = format!("\"{}\"", customer.id);
    let quote = stack.storefront.create_document_as_user(
        DocumentKind::Quote,
        &[
            ("customer", customer_json.as_str()),
            ("line_items", r#"[{"sku":"MUG-RED","quantity":10}]"#),
            ("status", "\"requested\""),
        ],
    );
    tracked.records.push((DocumentKind::Quote, quote.id.clone()));
    settle_and_print(stack, &tracked).await?;
    let erp_quote = erp_document(stack, DocumentKind::Quote, &quote.id).context("the ERP has no quote")?;
    checks.expect("b", "ERP quote status", field(Some(&erp_quote), "status"), "requested");
    let tasks = stack.store.open_tasks(&stack.rules.integration).await?;
    let titles: Vec<String> = tasks.iter().map(|open| open.task.title.clone()).collect();
    checks.expect(
        "b",
        "open tasks",
        titles.join("; "),
        &format!("price and approve quote {}", erp_quote.id),
    );

    heading("c", "Ada tries to convert the quote before sales approved it");
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    stack
        .storefront
        .edit_document_as_user(DocumentKind::Quote, &quote.id, &[("status", "\"converted\"")])?;
    settle_and_print(stack, &tracked).await?;
    let last = last_status_decision(stack, "quote", &quote.id).await?;
    checks.expect("c", "decision", last, "rejected_transition");
    let writes_after = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    checks.expect(
        "c",
        "writes (storefront, ERP)",
        format!("{:?}", diff(writes_before, writes_after)),
        "(0, 0)",
    );
    checks.expect(
        "c",
        "ERP quote status",
        field(erp_document(stack, DocumentKind::Quote, &quote.id).as_ref(), "status"),
        "requested",
    );

    let title = format!(
        "Sales prices quote {} at 115.00 and approves it in the ERP (the manual step)",
        erp_quote.id
    );
    heading("d", &title);
    stack.erp.price_and_approve_quote(&erp_quote.id, money("115.00"))?;
    settle_and_print(stack, &tracked).await?;
    let draft = stack.storefront.document(DocumentKind::Quote, &quote.id);
    checks.expect(
        "d",
        "storefront quote status",
        field(draft.as_ref(), "status"),
        "approved",
    );
    checks.expect(
        "d",
        "storefront quote total",
        field(draft.as_ref(), "total_price"),
        "115.00",
    );
    let open = stack.store.open_tasks(&stack.rules.integration).await?.len();
    checks.expect("d", "open tasks", open.to_string(), "0");

    heading(
        "e",
        "Ada converts the quote into an order; its webhook arrives twice more",
    );
    let order = stack.storefront.convert_quote_to_order(&quote.id)?;
    tracked.records.push((DocumentKind::Order, order.id.clone()));
    settle_and_print(stack, &tracked).await?;
    let erp_writes = stack.erp.api_write_count();
    let created = last_delivery(&stack.storefront.deliveries(), "orders/create")?;
    let client = reqwest::Client::new();
    let url = stack.receivers.url("storefront");
    resend(&client, &url, &created.headers, &created.body, None).await?;
    let other_subscription: Vec<(String, String)> = created
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("X-Shopify-Event-Id"))
        .map(|(name, value)| match name.as_str() {
            "X-Shopify-Webhook-Id" => (name.clone(), "second-subscription".to_owned()),
            _ => (name.clone(), value.clone()),
        })
        .collect();
    resend(&client, &url, &other_subscription, &created.body, None).await?;
    settle_and_print(stack, &tracked).await?;
    let external_id = format!("order:{}", order.id);
    let orders = stack.erp.orders();
    let matching = orders
        .iter()
        .filter(|sales_order| sales_order.external_id == external_id)
        .count();
    checks.expect("e", "ERP orders for it", matching.to_string(), "1");
    checks.expect(
        "e",
        "ERP writes for the redeliveries",
        (stack.erp.api_write_count() - erp_writes).to_string(),
        "0",
    );
    let sales_order = stack
        .erp
        .order_by_external_id(&external_id)
        .context("the ERP has no sales order")?;
    checks.expect(
        "e",
        "ERP order status",
        sales_order.status.clone().unwrap_or_default(),
        "placed",
    );
    checks.expect(
        "e",
        "ERP quote status",
        field(erp_document(stack, DocumentKind::Quote, &quote.id).as_ref(), "status"),
        "converted",
    );

    heading("f", "The warehouse fulfils the order in the ERP");
    let shipment = stack.erp.fulfil_order(&sales_order.number, "DHL", "JD014600006")?;
    tracked.records.push((DocumentKind::Shipment, shipment.id.clone()));
    settle_and_print(stack, &tracked).await?;
    let storefront_order = stack.storefront.document(DocumentKind::Order, &order.id);
    checks.expect(
        "f",
        "storefront order status",
        field(storefront_order.as_ref(), "status"),
        "fulfilled",
    );
    let fulfillment = storefront_document(stack, DocumentKind::Shipment, &shipment.id);
    checks.expect(
        "f",
        "storefront fulfillment status",
        field(fulfillment.as_ref(), "status"),
        "shipped",
    );

    heading(
        "g",
        "The carrier delivers; then the \"shipped\" event arrives again, late",
    );
    stack
        .erp
        .edit_document_as_user(DocumentKind::Shipment, &shipment.id, &[("status", "\"delivered\"")])?;
    settle_and_print(stack, &tracked).await?;
    let shipped = last_delivery(&stack.erp.deliveries(), "shipment.created")?;
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    replay_erp_event(
        &client,
        &stack.receivers.url("erp"),
        &shipped.body,
        "evt_replayed_shipped",
    )
    .await?;
    settle_and_print(stack, &tracked).await?;
    let fulfillment = storefront_document(stack, DocumentKind::Shipment, &shipment.id);
    checks.expect(
        "g",
        "storefront fulfillment status",
        field(fulfillment.as_ref(), "status"),
        "delivered",
    );
    let last = last_status_decision(stack, "shipment", &shipment.id).await?;
    checks.expect("g", "decision on the late event", last, "regression");
    let writes_after = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    checks.expect(
        "g",
        "writes (storefront, ERP)",
        format!("{:?}", diff(writes_before, writes_after)),
        "(0, 0)",
    );

    heading("h", "The mugs arrived damaged: Ada opens a return");
    let order_json = format!("\"{}\"", order.id);
    let return_request = stack.storefront.create_document_as_user(
        DocumentKind::Return,
        &[
            ("order", order_json.as_str()),
            ("reason", "\"damaged in transit\""),
            ("status", "\"requested\""),
        ],
    );
    tracked.records.push((DocumentKind::Return, return_request.id.clone()));
    settle_and_print(stack, &tracked).await?;
    let rma = erp_document(stack, DocumentKind::Return, &return_request.id).context("the ERP has no return")?;
    checks.expect("h", "ERP return status", field(Some(&rma), "status"), "requested");
    checks.expect(
        "h",
        "ERP return reason",
        field(Some(&rma), "reason"),
        "damaged in transit",
    );

    heading("i", "The ERP approves the return and refunds 115.00");
    stack
        .erp
        .edit_document_as_user(DocumentKind::Return, &rma.id, &[("status", "\"approved\"")])?;
    stack.settle(SETTLE_TIMEOUT).await?;
    stack.erp.edit_document_as_user(
        DocumentKind::Return,
        &rma.id,
        &[("status", "\"refunded\""), ("refund", "115.00")],
    )?;
    settle_and_print(stack, &tracked).await?;
    let storefront_return = stack.storefront.document(DocumentKind::Return, &return_request.id);
    checks.expect(
        "i",
        "storefront return status",
        field(storefront_return.as_ref(), "status"),
        "refunded",
    );
    checks.expect(
        "i",
        "storefront refund",
        field(storefront_return.as_ref(), "refund"),
        "115.00",
    );
    let open = stack.store.open_tasks(&stack.rules.integration).await?.len();
    checks.expect("i", "open tasks", open.to_string(), "0");
    Ok(())
}

/// Waits for the pipeline, then prints each record's state on both sides and the open tasks.
async fn settle_and_print(stack: &LocalStack, tracked: &Tracked) -> anyhow::Result<()> {
    stack.settle(SETTLE_TIMEOUT).await?;
    let mut rows = vec![[
        "record",
        "fieldsync",
        "storefront",
        "ERP",
        "last status decision",
        "reason",
    ]
    .map(str::to_owned)];
    for (kind, key) in &tracked.records {
        let entity = kind.as_str();
        let record = stack.record(entity, key).await?;
        let fieldsync = match &record {
            Some(record) if record.outbox.iter().any(|write| !write.parked_on.is_empty()) => {
                format!("{} (parked)", record.status.clone().unwrap_or_default())
            }
            Some(record) => record.status.clone().unwrap_or_else(|| "-".to_owned()),
            None => "(none)".to_owned(),
        };
        let decisions = stack.decisions(entity, key).await?;
        let last = decisions
            .iter()
            .rev()
            .find(|decision| decision.field.as_str() == "status");
        let (outcome, reason) = match last {
            Some(decision) => (
                format!("{} ({})", decision.outcome, decision.source),
                decision.reason.clone(),
            ),
            None => (String::new(), String::new()),
        };
        rows.push([
            format!("{entity} {key}"),
            fieldsync,
            describe(storefront_document(stack, *kind, key).as_ref()),
            describe(erp_document(stack, *kind, key).as_ref()),
            outcome,
            reason,
        ]);
    }
    print_rows(&rows);

    let tasks = stack.store.open_tasks(&stack.rules.integration).await?;
    if tasks.is_empty() {
        println!("  open tasks: none");
    }
    for open in tasks {
        println!(
            "  open task: {} (in {}, for {})",
            open.task.title, open.task.system, open.record
        );
    }
    Ok(())
}

/// Returns a document's id and status, as the table shows it.
fn describe(document: Option<&Document>) -> String {
    match document {
        Some(document) => match document.status() {
            Some(status) => format!("{} {status}", document.id),
            None => document.id.clone(),
        },
        None => "(none)".to_owned(),
    }
}

/// Finds the storefront's copy of a tracked record: by id for the records that start there,
/// by fieldsync's external id for the ones fieldsync created (shipments).
fn storefront_document(stack: &LocalStack, kind: DocumentKind, key: &str) -> Option<Document> {
    let external_id = RecordKey::new("", kind.as_str(), key).external_id();
    stack
        .storefront
        .document(kind, key)
        .or_else(|| stack.storefront.document_by_external_id(kind, &external_id))
}

/// Finds the ERP's copy of a tracked record. The ERP's sales orders are not documents, so an
/// order shows as its sales order number and status.
fn erp_document(stack: &LocalStack, kind: DocumentKind, key: &str) -> Option<Document> {
    let external_id = RecordKey::new("", kind.as_str(), key).external_id();
    if kind == DocumentKind::Order {
        let order = stack.erp.order_by_external_id(&external_id)?;
        return Some(Document {
            kind,
            id: order.number,
            external_id: Some(order.external_id),
            members: order
                .status
                .iter()
                .map(|status| ("status".to_owned(), fieldsync_sandbox::text_member(status)))
                .collect(),
            updated_at: order.last_modified,
            version: order.version,
        });
    }
    stack
        .erp
        .document_by_external_id(kind, &external_id)
        .or_else(|| stack.erp.document(kind, key))
}

fn field(document: Option<&Document>, member: &str) -> String {
    document.and_then(|document| document.text(member)).unwrap_or_default()
}

async fn last_status_decision(stack: &LocalStack, entity: &str, key: &str) -> anyhow::Result<String> {
    let decisions = stack.decisions(entity, key).await?;
    let last = decisions
        .iter()
        .rev()
        .find(|decision| decision.field.as_str() == "status");
    Ok(last.map(|decision| decision.outcome.to_string()).unwrap_or_default())
}

fn last_delivery(deliveries: &[Delivery], topic: &str) -> anyhow::Result<Delivery> {
    deliveries
        .iter()
        .rev()
        .find(|delivery| delivery.topic == topic)
        .cloned()
        .with_context(|| format!("no {topic} webhook was sent"))
}

fn diff(before: (u64, u64), after: (u64, u64)) -> (u64, u64) {
    (after.0 - before.0, after.1 - before.1)
}

/// Posts a recorded ERP event again under a new event id, stamped and signed now, as a sender
/// replaying its outbox after an outage would.
async fn replay_erp_event(client: &reqwest::Client, url: &str, body: &[u8], event_id: &str) -> anyhow::Result<()> {
    let mut event: serde_json::Value = serde_json::from_slice(body).context("recorded ERP event is not JSON")?;
    event["id"] = event_id.into();
    event["occurred_at"] = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true).into();
    let body = serde_json::to_vec(&event)?;
    let timestamp = Utc::now().timestamp().to_string();
    let signature = hmac_sha256_base64(ERP_WEBHOOK_SECRET.as_bytes(), &[timestamp.as_bytes(), b".", &body]);
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Fieldsync-Timestamp", timestamp)
        .header("X-Fieldsync-Signature", format!("v1={signature}"))
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot post to {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "the receiver returned HTTP {}",
        response.status()
    );
    Ok(())
}
