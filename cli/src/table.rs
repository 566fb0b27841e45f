//! The per-field table the demo prints after each step.

use fieldsync_core::{FieldName, Outcome};
use fieldsync_local::{LocalError, LocalStack};
use fieldsync_sandbox::erp::Item;
use fieldsync_sandbox::storefront::{Product, ProductStatus};

/// Product fields in the order the table lists them.
pub(crate) const PRODUCT_FIELDS: [&str; 10] = [
    "name",
    "price",
    "inventory",
    "customer_prices",
    "description",
    "meta_title",
    "meta_description",
    "images",
    "handle",
    "published",
];

/// Returns a product field's value in the ERP sandbox, as shown in the table.
pub(crate) fn erp_value(item: Option<&Item>, field: &str) -> String {
    let Some(item) = item else {
        return "(no item)".to_owned();
    };
    match field {
        "name" => item.description.clone(),
        "price" => item.unit_price.to_string(),
        "inventory" => item.inventory.to_string(),
        "customer_prices" => {
            let prices: Vec<String> = item
                .customer_prices
                .iter()
                .map(|row| format!("{}: {}", row.customer, row.unit_price))
                .collect();
            prices.join(", ")
        }
        "meta_title" => item.meta_title.clone().unwrap_or_default(),
        "meta_description" => item.meta_description.clone().unwrap_or_default(),
        _ => "·".to_owned(),
    }
}

/// Returns a product field's value in the storefront sandbox, as shown in the table.
pub(crate) fn storefront_value(product: Option<&Product>, sku: &str, field: &str) -> String {
    let Some(product) = product else {
        return "(no product)".to_owned();
    };
    let variant = product.variants.iter().find(|variant| variant.sku == sku);
    let metafield = |namespace: &str, key: &str| {
        product
            .metafields
            .iter()
            .find(|metafield| metafield.namespace == namespace && metafield.key == key)
            .map(|metafield| metafield.value.clone())
            .unwrap_or_default()
    };
    match field {
        "name" => product.title.clone(),
        "price" => variant.map(|variant| variant.price.to_string()).unwrap_or_default(),
        "inventory" => variant
            .map(|variant| variant.inventory_quantity.to_string())
            .unwrap_or_default(),
        "customer_prices" => metafield("fieldsync", "customer_prices"),
        "description" => product.description_html.clone(),
        "meta_title" => metafield("global", "title_tag"),
        "meta_description" => metafield("global", "description_tag"),
        "images" => product
            .images
            .iter()
            .map(|image| image.src.rsplit('/').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", "),
        "handle" => product.handle.clone(),
        "published" => (product.status == ProductStatus::Active).to_string(),
        _ => String::new(),
    }
}

/// Prints one row per product field: the value on each side, the owner, the last decision.
pub(crate) async fn print_product(stack: &LocalStack, sku: &str) -> Result<(), LocalError> {
    let item = stack.erp.item(sku);
    print_product_rows(stack, sku, "ERP", &PRODUCT_FIELDS, |field| {
        erp_value(item.as_ref(), field)
    })
    .await
}

/// Prints one row per field of `fields` for a product: the value in the ERP (read by
/// `erp_value`, under the column heading `erp_label`) and on the storefront, the owner, and the
/// last decision with its reason.
pub(crate) async fn print_product_rows(
    stack: &LocalStack,
    sku: &str,
    erp_label: &str,
    fields: &[&str],
    erp_value: impl Fn(&str) -> String,
) -> Result<(), LocalError> {
    let product = stack.storefront.product_by_sku(sku);
    let sides = Sides {
        erp_label,
        erp_value: &erp_value,
        storefront_value: &|field: &str| storefront_value(product.as_ref(), sku, field),
    };
    print_rows_of(stack, sku, fields, &sides).await
}

/// The two sandboxes a table row reads: the ERP column's heading and each side's value of a
/// field.
pub(crate) struct Sides<'a> {
    pub(crate) erp_label: &'a str,
    pub(crate) erp_value: &'a dyn Fn(&str) -> String,
    pub(crate) storefront_value: &'a dyn Fn(&str) -> String,
}

/// Prints one row per field of `fields` for a product: the value on each side, the owner, and
/// the last decision with its reason.
pub(crate) async fn print_rows_of(
    stack: &LocalStack,
    sku: &str,
    fields: &[&str],
    sides: &Sides<'_>,
) -> Result<(), LocalError> {
    let record = stack.record("product", sku).await?;
    let decisions = stack.decisions("product", sku).await?;
    let entity = stack.rules.entity(&"product".into());

    let mut rows = vec![[
        "field",
        sides.erp_label,
        "storefront",
        "owner",
        "last decision",
        "reason",
    ]
    .map(str::to_owned)];
    for field in fields {
        let name = FieldName::new(*field);
        let state = record.as_ref().and_then(|record| record.fields.get(&name));
        let owner = entity
            .and_then(|entity| entity.fields.get(&name))
            .map(|rule| {
                let status = record.as_ref().and_then(|record| record.status.as_deref());
                rule.owner(status, state.and_then(|state| state.claimed_by.as_ref()))
                    .to_string()
            })
            .unwrap_or_default();
        let last = decisions.iter().rev().find(|decision| decision.field == name);
        let (outcome, reason) = match last {
            Some(decision) => (
                describe(decision.outcome, &decision.targets, decision.source.as_str()),
                decision.reason.clone(),
            ),
            None => (String::new(), String::new()),
        };
        rows.push([
            (*field).to_owned(),
            (sides.erp_value)(field),
            (sides.storefront_value)(field),
            owner,
            outcome,
            reason,
        ]);
    }
    print_rows(&rows);
    Ok(())
}

pub(crate) fn describe(outcome: Outcome, targets: &[fieldsync_core::SystemId], source: &str) -> String {
    let targets: Vec<&str> = targets.iter().map(|target| target.as_str()).collect();
    if targets.is_empty() {
        format!("{outcome} ({source})")
    } else {
        format!("{outcome} ({source} → {})", targets.join(", "))
    }
}

/// Prints rows of six columns, the first a header, clipping all but the last column.
pub(crate) fn print_rows(rows: &[[String; 6]]) {
    const MAX_WIDTH: usize = 34;
    let clip = |text: &str| -> String {
        let text = text.replace('\n', " ");
        if text.chars().count() <= MAX_WIDTH {
            text
        } else {
            let mut clipped: String = text.chars().take(MAX_WIDTH - 1).collect();
            clipped.push('…');
            clipped
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(column, cell)| if column == 5 { cell.clone() } else { clip(cell) })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|column| cells.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    for (index, row) in cells.iter().enumerate() {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column < 5 {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            } else {
                line.push_str(cell);
            }
        }
        println!("  {}", line.trim_end());
        if index == 0 {
            println!("  {}", "-".repeat(widths.iter().sum::<usize>() + 2 * 5 + 6));
        }
    }
}
