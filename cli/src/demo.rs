//! The product story, played against the local stack.
//!
//! a. The ERP creates item MUG-RED; the storefront gets an unpublished product with all ERP data.
//! b. Marketing edits SEO fields, images and handle on the storefront; they stay, and the meta
//!    description flows back to the ERP.
//! c. The ERP changes price and name; the storefront follows, marketing fields untouched.
//! d. Someone edits the price on the storefront; the ERP keeps its price and the storefront
//!    shows the ERP's price again.
//! e. The ERP webhook of step c arrives twice more, once late and out of order; nothing is written.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use fieldsync_core::signature::hmac_sha256_base64;
use fieldsync_core::Outcome;
use fieldsync_local::{LocalOptions, LocalStack, ERP_WEBHOOK_SECRET};
use fieldsync_sandbox::erp::{CustomerPrice, ItemEdit};
use fieldsync_sandbox::storefront::{ProductEdit, ProductStatus};
use rust_decimal::Decimal;

use crate::table::{erp_value, print_product, storefront_value};

const SKU: &str = "MUG-RED";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Collects the checks of every step, so the demo reports all failures and not only the first.
#[derive(Default)]
pub(crate) struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub(crate) fn expect(&mut self, step: &str, what: &str, actual: String, expected: &str) {
        if actual == expected {
            println!("  ok   {what} = {expected:?}");
        } else {
            println!("  FAIL {what}: expected {expected:?}, found {actual:?}");
            self.failures
                .push(format!("step {step}: {what}: expected {expected:?}, found {actual:?}"));
        }
    }
}

/// Runs the story and returns success only when both sandboxes end in the expected state.
pub(crate) async fn run(options: LocalOptions) -> anyhow::Result<ExitCode> {
    play_story(
        options,
        "every field is with its owner on both sides, and no write was repeated.",
        |stack, checks| Box::pin(play(stack, checks)),
    )
    .await
}

/// The steps of a story, borrowing the running stack and the checks they add to.
pub(crate) type BoxedSteps<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// Starts the local stack, plays a story on it, stops the stack, and returns success only when
/// every check passed and no message reached the dead-letter queue.
pub(crate) async fn play_story(
    options: LocalOptions,
    success: &str,
    steps: impl for<'a> FnOnce(&'a LocalStack, &'a mut Checks) -> BoxedSteps<'a>,
) -> anyhow::Result<ExitCode> {
    let stack = LocalStack::start(options).await?;
    let mut checks = Checks::default();
    let result = steps(&stack, &mut checks).await;
    let dead_letters = stack.dead_letters().await;
    stack.shutdown().await;
    result?;
    Ok(finish(checks, dead_letters, success))
}

/// Prints the verdict of a story and returns its exit code: success only when every check
/// passed and no message went to the dead-letter queue.
pub(crate) fn finish(mut checks: Checks, dead_letters: usize, success: &str) -> ExitCode {
    if dead_letters > 0 {
        checks
            .failures
            .push(format!("{dead_letters} messages in the dead-letter queue"));
    }
    println!();
    if checks.failures.is_empty() {
        println!("demo passed: {success}");
        ExitCode::SUCCESS
    } else {
        println!("demo FAILED:");
        for failure in &checks.failures {
            println!("  - {failure}");
        }
        ExitCode::FAILURE
    }
}

async fn play(stack: &LocalStack, checks: &mut Checks) -> anyhow::Result<()> {
    let erp = |field: &str| erp_value(stack.erp.item(SKU).as_ref(), field);
    let storefront = |field: &str| storefront_value(stack.storefront.product_by_sku(SKU).as_ref(), SKU, field);

    heading(
        "a",
        "The ERP creates item MUG-RED with a price, stock and a customer-specific price",
    );
    stack.erp.upsert_item_as_user(
        SKU,
        ItemEdit {
            description: Some("Red mug".to_owned()),
            unit_price: Some(money("12.50")),
            inventory: Some(40),
            customer_prices: Some(vec![CustomerPrice {
                customer: "C-100".to_owned(),
                unit_price: money("11.00"),
            }]),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, SKU).await?;
    checks.expect("a", "storefront name", storefront("name"), "Red mug");
    checks.expect("a", "storefront price", storefront("price"), "12.50");
    checks.expect("a", "storefront inventory", storefront("inventory"), "40");
    checks.expect("a", "storefront published", storefront("published"), "false");
    checks.expect(
        "a",
        "storefront customer prices",
        storefront("customer_prices"),
        r#"[{"customer":"C-100","unit_price":"11"}]"#,
    );

    heading(
        "b",
        "Marketing edits meta title, meta description, images and handle on the storefront",
    );
    stack.storefront.edit_product_as_user(
        SKU,
        ProductEdit {
            seo_title: Some("Red Mug | Demo Shop".to_owned()),
            seo_description: Some("A bright red stoneware mug.".to_owned()),
            images: Some(vec!["https://cdn.example.test/mug-red-front.jpg".to_owned()]),
            handle: Some("red-stoneware-mug".to_owned()),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, SKU).await?;
    checks.expect(
        "b",
        "storefront meta title",
        storefront("meta_title"),
        "Red Mug | Demo Shop",
    );
    checks.expect("b", "storefront handle", storefront("handle"), "red-stoneware-mug");
    checks.expect(
        "b",
        "ERP meta description",
        erp("meta_description"),
        "A bright red stoneware mug.",
    );
    checks.expect("b", "ERP meta title (does not flow back)", erp("meta_title"), "");

    heading("c", "The ERP changes price and name");
    stack.erp.upsert_item_as_user(
        SKU,
        ItemEdit {
            description: Some("Red mug, 350 ml".to_owned()),
            unit_price: Some(money("14.00")),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, SKU).await?;
    let deliveries = stack.erp.deliveries();
    let step_c = deliveries
        .iter()
        .rev()
        .find(|delivery| delivery.topic == "item.updated")
        .cloned();
    let step_c = step_c.context("the ERP sent no item.updated webhook in step c")?;
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
            price: Some(money("9.99")),
            ..ProductEdit::default()
        },
    )?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, SKU).await?;
    checks.expect("d", "ERP price", erp("price"), "14.00");
    checks.expect("d", "storefront price (written back)", storefront("price"), "14.00");
    let decisions = stack.decisions("product", SKU).await?;
    let not_owner = decisions
        .iter()
        .any(|d| d.field.as_str() == "price" && d.outcome == Outcome::NotOwner && d.source.as_str() == "storefront");
    checks.expect("d", "price edit logged as not_owner", not_owner.to_string(), "true");

    heading(
        "e",
        "The ERP webhook of step c arrives twice more: at once, then late and out of order",
    );
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    let client = reqwest::Client::new();
    let url = stack.receivers.url("erp");
    let duplicate = resend(&client, &url, &step_c.headers, &step_c.body, None).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = resend(&client, &url, &step_c.headers, &step_c.body, Some(ERP_WEBHOOK_SECRET)).await?;
    stack.settle(SETTLE_TIMEOUT).await?;
    print_product(stack, SKU).await?;
    checks.expect("e", "duplicate delivery answered", duplicate.to_string(), "200");
    checks.expect("e", "late delivery answered", late.to_string(), "200");
    let writes_after = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    checks.expect(
        "e",
        "extra writes (storefront, ERP)",
        format!(
            "{:?}",
            (writes_after.0 - writes_before.0, writes_after.1 - writes_before.1)
        ),
        "(0, 0)",
    );
    checks.expect("e", "storefront price", storefront("price"), "14.00");
    checks.expect(
        "e",
        "storefront published (waits for marketing)",
        storefront("published"),
        "false",
    );
    let product = stack.storefront.product_by_sku(SKU);
    let draft = product
        .map(|product| product.status == ProductStatus::Draft)
        .unwrap_or(false);
    checks.expect("e", "storefront product is a draft", draft.to_string(), "true");
    Ok(())
}

/// Posts a recorded webhook again. With `secret`, it is signed anew with the current time, as a
/// sender's retry hours later would be. The event id in the body stays the same.
pub(crate) async fn resend(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    secret: Option<&str>,
) -> anyhow::Result<u16> {
    let mut request = client.post(url).body(body.to_vec());
    let timestamp = Utc::now().timestamp().to_string();
    for (name, value) in headers {
        let value = match (secret, name.to_ascii_lowercase().as_str()) {
            (Some(_), "x-fieldsync-timestamp") => timestamp.clone(),
            (Some(secret), "x-fieldsync-signature") => {
                format!(
                    "v1={}",
                    hmac_sha256_base64(secret.as_bytes(), &[timestamp.as_bytes(), b".", body])
                )
            }
            _ => value.clone(),
        };
        request = request.header(name.as_str(), value);
    }
    let response = request.send().await.with_context(|| format!("cannot post to {url}"))?;
    Ok(response.status().as_u16())
}

pub(crate) fn heading(step: &str, title: &str) {
    println!();
    println!("Step {step}. {title}");
}

pub(crate) fn money(text: &str) -> Decimal {
    // The demo's amounts are valid decimal literals.
    Decimal::from_str(text).unwrap_or_default()
}
