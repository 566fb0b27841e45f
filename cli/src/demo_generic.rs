//! The product story against an ERPNext-like ERP reached through the generic connector.
//!
//! a. ERPNext creates item MUG-RED; the storefront gets an unpublished product.
//! b. Marketing edits SEO fields and the handle on the storefront; the meta description flows
//!    back to ERPNext's `custom_meta_description`.
//! c. ERPNext changes price and name; the storefront follows, marketing fields untouched.
//! d. Someone edits the price on the storefront; it is logged as `not_owner` and written back.
//! e. Frappe's webhook of step c arrives twice more (Frappe retries with the same body and
//!    signature); nothing is written.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fieldsync_core::Outcome;
use fieldsync_local::{LocalError, LocalOptions, LocalStack};
use fieldsync_sandbox::erpnext::{ErpNextHandle, Item, ItemEdit};
use fieldsync_sandbox::storefront::{ProductEdit, ProductStatus};

use crate::demo::{heading, play_story, Checks};
use crate::table::{print_product_rows, storefront_value};

const SKU: &str = "MUG-RED";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Product fields the ERPNext connector maps, plus the storefront-owned ones the story touches.
const FIELDS: [&str; 6] = ["name", "price", "meta_title", "meta_description", "handle", "published"];

/// Runs the story and returns success only when both sandboxes end in the expected state.
pub(crate) async fn run(options: LocalOptions) -> anyhow::Result<ExitCode> {
    play_story(
        options,
        "every field is with its owner in ERPNext and the storefront, and no write was repeated.",
        |stack, checks| Box::pin(play(stack, checks)),
    )
    .await
}

async fn play(stack: &LocalStack, checks: &mut Checks) -> anyhow::Result<()> {
    let erpnext = stack
        .erpnext
        .as_ref()
        .context("the local stack has no ERPNext sandbox")?;
    let erp = |field: &str| erp_value(erpnext.item(SKU).as_ref(), field);
    let storefront = |field: &str| storefront_value(stack.storefront.product_by_sku(SKU).as_ref(), SKU, field);

    heading("a", "ERPNext creates item MUG-RED with a price");
    erpnext.upsert_item_as_user(
        SKU,
        ItemEdit {
            item_name: Some("Red mug".to_owned()),
            standard_rate: Some("12.50".parse()?),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, erpnext).await?;
    checks.expect("a", "storefront name", storefront("name"), "Red mug");
    checks.expect("a", "storefront price", storefront("price"), "12.50");
    checks.expect("a", "storefront published", storefront("published"), "false");

    heading(
        "b",
        "Marketing edits meta title, meta description and handle on the storefront",
    );
    stack.storefront.edit_product_as_user(
        SKU,
        ProductEdit {
            seo_title: Some("Red Mug | Demo Shop".to_owned()),
            seo_description: Some("A bright red stoneware mug.".to_owned()),
            handle: Some("red-stoneware-mug".to_owned()),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, erpnext).await?;
    checks.expect("b", "storefront handle", storefront("handle"), "red-stoneware-mug");
    checks.expect(
        "b",
        "ERPNext meta description",
        erp("meta_description"),
        "A bright red stoneware mug.",
    );
    checks.expect("b", "ERPNext meta title (does not flow back)", erp("meta_title"), "");

    heading("c", "ERPNext changes price and name");
    erpnext.set_item_name(SKU, "Red mug, 350 ml");
    erpnext.set_price(SKU, "14.00");
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, erpnext).await?;
    let step_c = erpnext
        .deliveries()
        .into_iter()
        .rev()
        .find(|delivery| delivery.succeeded())
        .context("ERPNext sent no webhook in step c")?;
    checks.expect("c", "storefront price", storefront("price"), "14.00");
    checks.expect("c", "storefront name", storefront("name"), "Red mug, 350 ml");
    checks.expect(
        "c",
        "storefront meta title (untouched)",
        storefront("meta_title"),
        "Red Mug | Demo Shop",
    );
    checks.expect(
        "c",
        "storefront handle (untouched)",
        storefront("handle"),
        "red-stoneware-mug",
    );

    heading("d", "Someone edits the price on the storefront");
    stack.storefront.edit_product_as_user(
        SKU,
        ProductEdit {
            price: Some("9.99".parse()?),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, erpnext).await?;
    checks.expect("d", "ERPNext price", erp("price"), "14.00");
    checks.expect("d", "storefront price (written back)", storefront("price"), "14.00");
    let decisions = stack.decisions("product", SKU).await?;
    let not_owner = decisions
        .iter()
        .any(|d| d.field.as_str() == "price" && d.outcome == Outcome::NotOwner && d.source.as_str() == "storefront");
    checks.expect("d", "price edit logged as not_owner", not_owner.to_string(), "true");

    heading(
        "e",
        "Frappe's webhook of step c arrives twice more: at once, then a second later",
    );
    let writes_before = (stack.storefront.api_write_count(), erpnext.api_write_count());
    let client = reqwest::Client::new();
    let url = stack.receivers.url("erp");
    let duplicate = resend(&client, &url, &step_c.headers, &step_c.body).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = resend(&client, &url, &step_c.headers, &step_c.body).await?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, erpnext).await?;
    checks.expect("e", "duplicate delivery answered", duplicate.to_string(), "200");
    checks.expect("e", "late delivery answered", late.to_string(), "200");
    let writes_after = (stack.storefront.api_write_count(), erpnext.api_write_count());
    checks.expect(
        "e",
        "extra writes (storefront, ERPNext)",
        format!(
            "{:?}",
            (writes_after.0 - writes_before.0, writes_after.1 - writes_before.1)
        ),
        "(0, 0)",
    );
    checks.expect("e", "storefront price", storefront("price"), "14.00");
    let draft = stack
        .storefront
        .product_by_sku(SKU)
        .is_some_and(|product| product.status == ProductStatus::Draft);
    checks.expect("e", "storefront product is a draft", draft.to_string(), "true");
    Ok(())
}

/// Posts a recorded Frappe webhook again with its original headers, as Frappe's retry does.
async fn resend(client: &reqwest::Client, url: &str, headers: &[(String, String)], body: &[u8]) -> anyhow::Result<u16> {
    let mut request = client.post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.with_context(|| format!("cannot post to {url}"))?;
    Ok(response.status().as_u16())
}

/// Returns a product field's value in the ERPNext sandbox, as shown in the table.
fn erp_value(item: Option<&Item>, field: &str) -> String {
    let Some(item) = item else {
        return "(no item)".to_owned();
    };
    match field {
        "name" => item.item_name.clone(),
        "price" => item.standard_rate.to_string(),
        "meta_title" => item.custom_meta_title.clone().unwrap_or_default(),
        "meta_description" => item.custom_meta_description.clone().unwrap_or_default(),
        _ => "·".to_owned(),
    }
}

/// Prints one row per field: the value on each side, the owner, the last decision.
async fn print_product(stack: &LocalStack, erpnext: &ErpNextHandle) -> Result<(), LocalError> {
    let item = erpnext.item(SKU);
    print_product_rows(stack, SKU, "ERPNext", &FIELDS, |field| erp_value(item.as_ref(), field)).await
}
