//! The product story with NetSuite as the ERP and BigCommerce or WooCommerce as the storefront.
//!
//! a. A person creates item MUG-RED in NetSuite; the outbox delivers it, and the storefront gets
//!    an unpublished product with its name, price and stock.
//! b. Marketing edits the meta description and the URL handle on the storefront. The meta
//!    description flows back into the item by a REST PATCH, and the handle stays on the storefront.
//! c. NetSuite changes price and name; the storefront follows, marketing fields untouched.
//! d. Someone edits the price on the storefront; it is logged as `not_owner` and written back.
//! e. The outbox delivery of step c arrives twice more; nothing is written.
//! f. Twelve more items arrive at once and marketing describes all of them; every description
//!    reaches NetSuite while the requests open at once stay within the account's limit.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fieldsync_core::Outcome;
use fieldsync_local::{LocalOptions, LocalStack};
use fieldsync_sandbox::bigcommerce::{BigCommerceHandle, ProductEdit as BigCommerceEdit};
use fieldsync_sandbox::netsuite::{Item, ItemEdit, NetSuiteHandle};
use fieldsync_sandbox::woocommerce::{ProductEdit as WooCommerceEdit, WooCommerceHandle};
use rust_decimal::Decimal;

use crate::demo::{heading, money, play_story, Checks};
use crate::table::{print_rows_of, Sides};

const SKU: &str = "MUG-RED";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many items step f creates at once.
const BULK_ITEMS: usize = 12;

/// Product fields NetSuite holds, plus the storefront-owned ones the story touches.
const FIELDS: [&str; 7] = [
    "name",
    "price",
    "inventory",
    "meta_title",
    "meta_description",
    "handle",
    "published",
];

/// The storefront sandbox of the pair.
#[derive(Clone, Copy)]
enum Shop<'a> {
    BigCommerce(&'a BigCommerceHandle),
    WooCommerce(&'a WooCommerceHandle),
}

impl Shop<'_> {
    fn label(self) -> &'static str {
        match self {
            Shop::BigCommerce(_) => "BigCommerce",
            Shop::WooCommerce(_) => "WooCommerce",
        }
    }

    /// Returns a product field as the table shows it; money at two decimal places.
    fn value(self, sku: &str, field: &str) -> String {
        match self {
            Shop::BigCommerce(shop) => {
                let Some(product) = shop.product_by_sku(sku) else {
                    return "(no product)".to_owned();
                };
                let variant = product.variant(sku);
                match field {
                    "name" => product.name.clone(),
                    "price" => variant.map_or_else(String::new, |variant| cents(product.price_of(variant))),
                    "inventory" => variant.map_or_else(String::new, |variant| variant.inventory_level.to_string()),
                    "meta_title" => product.page_title.clone(),
                    "meta_description" => product.meta_description.clone(),
                    "handle" => product.custom_url.trim_matches('/').to_owned(),
                    "published" => product.is_visible.to_string(),
                    _ => String::new(),
                }
            }
            Shop::WooCommerce(shop) => {
                let Some(product) = shop.product_by_sku(sku) else {
                    return "(no product)".to_owned();
                };
                match field {
                    "name" => product.name.clone(),
                    "price" => product
                        .regular_price
                        .parse::<Decimal>()
                        .map_or_else(|_| product.regular_price.clone(), cents),
                    "inventory" => product
                        .stock_quantity
                        .map(|units| units.to_string())
                        .unwrap_or_default(),
                    "meta_title" => product.meta_title.clone().unwrap_or_default(),
                    "meta_description" => product.meta_description.clone().unwrap_or_default(),
                    "handle" => product.slug.clone(),
                    "published" => (product.status == "publish").to_string(),
                    _ => String::new(),
                }
            }
        }
    }

    /// Plays marketing editing the meta description and the URL handle.
    fn edit_marketing(self, sku: &str, meta_description: &str, handle: &str) -> anyhow::Result<()> {
        match self {
            Shop::BigCommerce(shop) => {
                let edit = BigCommerceEdit {
                    meta_description: Some(meta_description.to_owned()),
                    custom_url: Some(format!("/{handle}/")),
                    ..BigCommerceEdit::default()
                };
                shop.edit_product_as_merchant(sku, edit)?;
            }
            Shop::WooCommerce(shop) => {
                let edit = WooCommerceEdit {
                    meta_description: Some(meta_description.to_owned()),
                    slug: Some(handle.to_owned()),
                    ..WooCommerceEdit::default()
                };
                shop.edit_product_as_merchant(sku, edit)?;
            }
        }
        Ok(())
    }

    /// Plays someone editing the price in the store's admin.
    fn edit_price(self, sku: &str, price: &str) -> anyhow::Result<()> {
        match self {
            Shop::BigCommerce(shop) => {
                let edit = BigCommerceEdit {
                    price: Some(money(price)),
                    ..BigCommerceEdit::default()
                };
                shop.edit_product_as_merchant(sku, edit)?;
            }
            Shop::WooCommerce(shop) => {
                let edit = WooCommerceEdit {
                    regular_price: Some(price.to_owned()),
                    ..WooCommerceEdit::default()
                };
                shop.edit_product_as_merchant(sku, edit)?;
            }
        }
        Ok(())
    }

    /// Returns how many API requests the store served.
    fn api_requests(self) -> u64 {
        match self {
            Shop::BigCommerce(shop) => shop.api_request_count(),
            Shop::WooCommerce(shop) => shop.api_request_count(),
        }
    }
}

/// Formats an amount at two decimal places, as both stores show prices.
fn cents(amount: Decimal) -> String {
    format!("{amount:.2}")
}

/// Runs the story and returns success only when both sandboxes end in the expected state.
pub(crate) async fn run(options: LocalOptions) -> anyhow::Result<ExitCode> {
    play_story(
        options,
        "every field is with its owner in NetSuite and the storefront, within the account's concurrency limit.",
        |stack, checks| Box::pin(play(stack, checks)),
    )
    .await
}

async fn play(stack: &LocalStack, checks: &mut Checks) -> anyhow::Result<()> {
    let netsuite = stack
        .netsuite
        .as_ref()
        .context("the local stack has no NetSuite sandbox")?;
    let shop = match (&stack.bigcommerce, &stack.woocommerce) {
        (Some(shop), _) => Shop::BigCommerce(shop),
        (_, Some(shop)) => Shop::WooCommerce(shop),
        (None, None) => anyhow::bail!("the local stack has no BigCommerce or WooCommerce sandbox"),
    };
    let erp = |field: &str| erp_value(netsuite.item(SKU).as_ref(), field);
    let storefront = |field: &str| shop.value(SKU, field);

    heading("a", "A person creates item MUG-RED in NetSuite");
    netsuite.upsert_item_as_user(
        SKU,
        ItemEdit {
            display_name: Some("Red mug".to_owned()),
            base_price: Some(money("12.50")),
            quantity_available: Some(40),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, netsuite, shop).await?;
    checks.expect("a", "storefront name", storefront("name"), "Red mug");
    checks.expect("a", "storefront price", storefront("price"), "12.50");
    checks.expect("a", "storefront inventory", storefront("inventory"), "40");
    checks.expect("a", "storefront published", storefront("published"), "false");

    heading(
        "b",
        &format!("Marketing edits the meta description and handle on {}", shop.label()),
    );
    shop.edit_marketing(SKU, "Stoneware, glazed by hand", "red-stoneware-mug")?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, netsuite, shop).await?;
    checks.expect("b", "storefront handle", storefront("handle"), "red-stoneware-mug");
    checks.expect(
        "b",
        "NetSuite meta description",
        erp("meta_description"),
        "Stoneware, glazed by hand",
    );

    heading("c", "NetSuite changes price and name");
    netsuite.upsert_item_as_user(
        SKU,
        ItemEdit {
            display_name: Some("Red mug, 350 ml".to_owned()),
            base_price: Some(money("14.00")),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, netsuite, shop).await?;
    let step_c = netsuite
        .deliveries()
        .into_iter()
        .rev()
        .find(|delivery| delivery.succeeded())
        .context("NetSuite delivered nothing in step c")?;
    checks.expect("c", "storefront price", storefront("price"), "14.00");
    checks.expect("c", "storefront name", storefront("name"), "Red mug, 350 ml");
    checks.expect(
        "c",
        "storefront meta description (untouched)",
        storefront("meta_description"),
        "Stoneware, glazed by hand",
    );

    heading("d", &format!("Someone edits the price on {}", shop.label()));
    shop.edit_price(SKU, "9.99")?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, netsuite, shop).await?;
    checks.expect("d", "NetSuite price", erp("price"), "14.00");
    checks.expect("d", "storefront price (written back)", storefront("price"), "14.00");
    let decisions = stack.decisions("product", SKU).await?;
    let not_owner = decisions.iter().any(|decision| {
        decision.field.as_str() == "price"
            && decision.outcome == Outcome::NotOwner
            && decision.source.as_str() == "storefront"
    });
    checks.expect("d", "price edit logged as not_owner", not_owner.to_string(), "true");

    heading("e", "The outbox delivery of step c arrives twice more");
    let requests_before = shop.api_requests();
    let writes_before = netsuite.api_write_count();
    let client = reqwest::Client::new();
    let url = stack.receivers.url("erp");
    for attempt in ["duplicate", "late duplicate"] {
        let mut request = client.post(&url).body(step_c.body.clone());
        for (name, value) in &step_c.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let status = request.send().await.context("cannot post the delivery again")?.status();
        checks.expect("e", &format!("{attempt} answered"), status.as_u16().to_string(), "200");
    }
    stack.settle(SETTLE_TIMEOUT).await?;
    let extra = shop.api_requests() - requests_before;
    checks.expect("e", "extra storefront requests", extra.to_string(), "0");
    let extra = netsuite.api_write_count() - writes_before;
    checks.expect("e", "extra NetSuite writes", extra.to_string(), "0");

    bulk_descriptions(stack, netsuite, shop, checks).await
}

/// Step f: many items and descriptions at once, so NetSuite writes run in parallel.
async fn bulk_descriptions(
    stack: &LocalStack,
    netsuite: &NetSuiteHandle,
    shop: Shop<'_>,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    heading(
        "f",
        &format!("{BULK_ITEMS} more items arrive and marketing describes them all at once"),
    );
    let skus: Vec<String> = (1..=BULK_ITEMS).map(|index| format!("MUG-{index:02}")).collect();
    for sku in &skus {
        netsuite.upsert_item_as_user(
            sku,
            ItemEdit {
                display_name: Some(format!("Mug {sku}")),
                base_price: Some(money("9.50")),
                quantity_available: Some(10),
                ..ItemEdit::default()
            },
        );
    }
    stack.settle(SETTLE_TIMEOUT).await?;
    for sku in &skus {
        shop.edit_marketing(sku, &format!("Describes {sku}"), &sku.to_ascii_lowercase())?;
    }
    stack.settle(SETTLE_TIMEOUT).await?;

    let described = skus
        .iter()
        .filter(|sku| {
            netsuite
                .item(sku)
                .and_then(|item| item.meta_description())
                .is_some_and(|text| text == format!("Describes {sku}"))
        })
        .count();
    println!(
        "NetSuite: {described} of {BULK_ITEMS} descriptions arrived; at most {} requests were open at once; {} rejected for concurrency",
        netsuite.max_concurrent_seen(),
        netsuite.concurrency_rejections()
    );
    checks.expect(
        "f",
        "descriptions in NetSuite",
        described.to_string(),
        &BULK_ITEMS.to_string(),
    );
    let created = skus
        .iter()
        .filter(|sku| shop.value(sku, "name") == format!("Mug {sku}"))
        .count();
    checks.expect(
        "f",
        "products on the storefront",
        created.to_string(),
        &BULK_ITEMS.to_string(),
    );
    let within = netsuite.max_concurrent_seen() <= u64::from(stack.netsuite_concurrency_limit);
    checks.expect("f", "open requests within the limit", within.to_string(), "true");
    checks.expect(
        "f",
        "requests NetSuite rejected for concurrency",
        netsuite.concurrency_rejections().to_string(),
        "0",
    );
    Ok(())
}

/// Returns a product field's value in the NetSuite sandbox, as shown in the table.
fn erp_value(item: Option<&Item>, field: &str) -> String {
    let Some(item) = item else {
        return "(no item)".to_owned();
    };
    match field {
        "name" => item.display_name.clone().unwrap_or_default(),
        "price" => item.base_price.map(cents).unwrap_or_default(),
        "inventory" => item.quantity_available.to_string(),
        "meta_title" => item.page_title.clone().unwrap_or_default(),
        "meta_description" => item.meta_description().unwrap_or_default(),
        _ => "·".to_owned(),
    }
}

/// Prints one row per field: the value on each side, the owner, the last decision.
async fn print_product(stack: &LocalStack, netsuite: &NetSuiteHandle, shop: Shop<'_>) -> anyhow::Result<()> {
    let item = netsuite.item(SKU);
    let sides = Sides {
        erp_label: "NetSuite",
        erp_value: &|field: &str| erp_value(item.as_ref(), field),
        storefront_value: &|field: &str| shop.value(SKU, field),
    };
    print_rows_of(stack, SKU, &FIELDS, &sides).await?;
    Ok(())
}
