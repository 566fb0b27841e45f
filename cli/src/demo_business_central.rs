//! The product story with Business Central as the ERP, through its thin notifications.
//!
//! a. Business Central creates item MUG-RED; the notification names only the item, so fieldsync
//!    reads it, and the storefront gets an unpublished product with all its data.
//! b. Marketing edits the meta title and handle on the storefront; the meta title flows back into
//!    the item's `displayName2` by a PATCH with `If-Match`.
//! c. Business Central changes price and name; the storefront follows, marketing fields untouched.
//! d. Someone edits the price on the storefront; it is logged as `not_owner` and written back.
//! e. Business Central's notification of step c arrives twice more; nothing is written.
//! f. The subscription expires and the price changes meanwhile, unnotified; the renewal creates
//!    a new subscription and its catch-up brings the price to the storefront.
//! g. A customer signs up and orders two mugs on the storefront; Business Central gets the
//!    customer and a sales order with its line, ships it, and the storefront order is fulfilled.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fieldsync_connectors::business_central::Ensured;
use fieldsync_core::Outcome;
use fieldsync_local::{LocalError, LocalOptions, LocalStack};
use fieldsync_sandbox::business_central::{BusinessCentralHandle, Item, ItemEdit};
use fieldsync_sandbox::storefront::{ProductEdit, ProductStatus};
use fieldsync_sandbox::DocumentKind;

use crate::demo::{heading, money, play_story, Checks};
use crate::table::{print_product_rows, storefront_value};

const SKU: &str = "MUG-RED";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Product fields Business Central holds, plus the storefront-owned ones the story touches.
const FIELDS: [&str; 6] = ["name", "price", "inventory", "meta_title", "handle", "published"];

/// Runs the story and returns success only when both sandboxes end in the expected state.
pub(crate) async fn run(options: LocalOptions) -> anyhow::Result<ExitCode> {
    play_story(
        options,
        "every field is with its owner in Business Central and the storefront, and no write was repeated.",
        |stack, checks| Box::pin(play(stack, checks)),
    )
    .await
}

async fn play(stack: &LocalStack, checks: &mut Checks) -> anyhow::Result<()> {
    let bc = stack
        .business_central
        .as_ref()
        .context("the local stack has no Business Central sandbox")?;
    let erp = |field: &str| erp_value(bc.item(SKU).as_ref(), field);
    let storefront = |field: &str| storefront_value(stack.storefront.product_by_sku(SKU).as_ref(), SKU, field);

    heading("a", "Business Central creates item MUG-RED");
    bc.upsert_item_as_user(
        SKU,
        ItemEdit {
            display_name: Some("Red mug".to_owned()),
            unit_price: Some(money("12.50")),
            inventory: Some(money("40")),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    checks.expect("a", "storefront name", storefront("name"), "Red mug");
    checks.expect("a", "storefront price", storefront("price"), "12.50");
    checks.expect("a", "storefront inventory", storefront("inventory"), "40");
    checks.expect("a", "storefront published", storefront("published"), "false");

    heading("b", "Marketing edits the meta title and handle on the storefront");
    stack.storefront.edit_product_as_user(
        SKU,
        ProductEdit {
            seo_title: Some("Red Mug | Demo Shop".to_owned()),
            handle: Some("red-stoneware-mug".to_owned()),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    checks.expect("b", "storefront handle", storefront("handle"), "red-stoneware-mug");
    checks.expect(
        "b",
        "Business Central displayName2",
        erp("meta_title"),
        "Red Mug | Demo Shop",
    );

    heading("c", "Business Central changes price and name");
    bc.upsert_item_as_user(
        SKU,
        ItemEdit {
            display_name: Some("Red mug, 350 ml".to_owned()),
            unit_price: Some(money("14.00")),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    let step_c = bc
        .deliveries()
        .into_iter()
        .rev()
        .find(|delivery| delivery.succeeded())
        .context("Business Central sent no notification in step c")?;
    checks.expect("c", "storefront price", storefront("price"), "14.00");
    checks.expect("c", "storefront name", storefront("name"), "Red mug, 350 ml");
    checks.expect(
        "c",
        "storefront meta title (untouched)",
        storefront("meta_title"),
        "Red Mug | Demo Shop",
    );

    heading("d", "Someone edits the price on the storefront");
    stack.storefront.edit_product_as_user(
        SKU,
        ProductEdit {
            price: Some(money("9.99")),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    checks.expect("d", "Business Central price", erp("price"), "14.00");
    checks.expect("d", "storefront price (written back)", storefront("price"), "14.00");
    let decisions = stack.decisions("product", SKU).await?;
    let not_owner = decisions.iter().any(|decision| {
        decision.field.as_str() == "price"
            && decision.outcome == Outcome::NotOwner
            && decision.source.as_str() == "storefront"
    });
    checks.expect("d", "price edit logged as not_owner", not_owner.to_string(), "true");

    heading("e", "The notification of step c arrives twice more");
    let writes_before = stack.storefront.api_write_count();
    let client = reqwest::Client::new();
    let url = stack.receivers.url("erp");
    for attempt in ["duplicate", "late duplicate"] {
        let mut request = client.post(&url).body(step_c.body.clone());
        for (name, value) in &step_c.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let status = request
            .send()
            .await
            .context("cannot post the notification again")?
            .status();
        checks.expect("e", &format!("{attempt} answered"), status.as_u16().to_string(), "200");
    }
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    let extra = stack.storefront.api_write_count() - writes_before;
    checks.expect("e", "extra storefront writes", extra.to_string(), "0");

    heading(
        "f",
        "The subscription expires, the price changes meanwhile, and the renewal catches up",
    );
    for subscription in bc.subscriptions() {
        bc.expire_subscription(&subscription.subscription_id)?;
    }
    bc.set_price_as_user(SKU, money("15.50"))?;
    stack.settle(SETTLE_TIMEOUT).await?;
    checks.expect("f", "storefront price while unsubscribed", storefront("price"), "14.00");
    let ensured = stack.renew_business_central_subscription().await?;
    let created = matches!(ensured, Some(Ensured::Created(_)));
    checks.expect("f", "expired subscription created again", created.to_string(), "true");
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, bc).await?;
    checks.expect("f", "storefront price after the catch-up", storefront("price"), "15.50");
    let renewed = matches!(
        stack.renew_business_central_subscription().await?,
        Some(Ensured::Renewed(_))
    );
    checks.expect("f", "live subscription renewed", renewed.to_string(), "true");
    let draft = stack
        .storefront
        .product_by_sku(SKU)
        .is_some_and(|product| product.status == ProductStatus::Draft);
    checks.expect("f", "storefront product is still a draft", draft.to_string(), "true");

    order_to_shipment(stack, bc, checks).await
}

/// Step g: a storefront order through Business Central's customers and sales orders.
async fn order_to_shipment(stack: &LocalStack, bc: &BusinessCentralHandle, checks: &mut Checks) -> anyhow::Result<()> {
    heading("g", "Ada signs up and orders two mugs; Business Central ships them");
    let customer = stack.storefront.create_document_as_user(
        DocumentKind::Customer,
        &[("name", "\"Ada Lovelace\""), ("email", "\"ada@example.test\"")],
    );
    let customer_json = format!("\"{}\"", customer.id);
    let order = stack.storefront.create_document_as_user(
        DocumentKind::Order,
        &[
            ("customer", customer_json.as_str()),
            ("email", "\"ada@example.test\""),
            ("line_items", r#"[{"sku":"MUG-RED","quantity":2,"price":"15.50"}]"#),
            ("status", "\"placed\""),
        ],
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    let bc_customer = bc.customer(&customer.id.to_ascii_uppercase());
    checks.expect(
        "g",
        "Business Central customer",
        bc_customer.map(|customer| customer.display_name).unwrap_or_default(),
        "Ada Lovelace",
    );
    let sales_order = bc
        .sales_order_by_external(&order.id)
        .context("Business Central has no sales order for the storefront order")?;
    let lines: Vec<String> = sales_order
        .lines
        .iter()
        .map(|line| {
            format!(
                "{} x{} at {:.2}",
                line.line_object_number, line.quantity, line.unit_price
            )
        })
        .collect();
    println!(
        "Business Central sales order {} for customer {}: {}",
        sales_order.number,
        sales_order.customer_number,
        lines.join(", ")
    );
    checks.expect("g", "sales order lines", lines.join(", "), "MUG-RED x2 at 15.50");

    bc.ship_order_as_user(&sales_order.number)?;
    stack.settle(SETTLE_TIMEOUT).await?;
    let status = stack
        .storefront
        .document(DocumentKind::Order, &order.id)
        .and_then(|order| order.text("status"))
        .unwrap_or_default();
    checks.expect("g", "storefront order status", status, "fulfilled");
    Ok(())
}

/// Returns a product field's value in the Business Central sandbox, as shown in the table.
fn erp_value(item: Option<&Item>, field: &str) -> String {
    let Some(item) = item else {
        return "(no item)".to_owned();
    };
    match field {
        "name" => item.display_name.clone(),
        "price" => item.unit_price.to_string(),
        "inventory" => item.inventory.to_string(),
        "meta_title" => item.display_name_2.clone(),
        _ => "·".to_owned(),
    }
}

/// Prints one row per field: the value on each side, the owner, the last decision.
async fn print_product(stack: &LocalStack, bc: &BusinessCentralHandle) -> Result<(), LocalError> {
    let item = bc.item(SKU);
    print_product_rows(stack, SKU, "Business Central", &FIELDS, |field| {
        erp_value(item.as_ref(), field)
    })
    .await
}
