//! The implemented root fields, run against the store under its lock.
//!
//! Every mutation validates its whole input first and changes nothing when any `userErrors`
//! result, so a failed call never half-applies. A product changes (and gets a new `updated_at`
//! and a webhook) only when a value actually differs from the stored one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::graphql::{RootCall, RootField};
use super::inputs::{
    argument, money, required_argument, InvalidInput, InventorySetQuantitiesInput, MetafieldInput, MetafieldsSetInput,
    ProductSetIdentifiers, ProductSetInput, ProductUpdateInput, SeoInput, VariantSetInput, VariantsBulkInput,
    WebhookSubscriptionInput,
};
use super::model::{
    parse_gid, set_metafield, stamp_changes, ChangeKind, Image, Product, ProductStatus, Store, Variant,
    WebhookSubscription, LOCATION_GID, SEO_DESCRIPTION_KEY, SEO_NAMESPACE, SEO_TITLE_KEY,
};
use super::nodes::{graphql_time, metafield_node, product_node, user_error, variant_node};

/// The namespace Shopify gives a metafield input that names none: the app's reserved one.
const APP_NAMESPACE: &str = "$app";

/// Reasons `inventorySetQuantities` accepts.
const INVENTORY_REASONS: &[&str] = &[
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

const MAX_QUANTITY: i64 = 1_000_000_000;

/// Requested and actual cost of listing webhook subscriptions.
const WEBHOOK_SUBSCRIPTIONS_COST: u32 = 12;

/// Webhook topics a subscription may name, in GraphQL's form: the ones the sandbox sends.
const WEBHOOK_TOPICS: &[&str] = &[
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "INVENTORY_LEVELS_UPDATE",
    "CUSTOMERS_CREATE",
    "CUSTOMERS_UPDATE",
    "DRAFT_ORDERS_CREATE",
    "DRAFT_ORDERS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "FULFILLMENTS_CREATE",
    "FULFILLMENTS_UPDATE",
    "RETURNS_REQUEST",
    "RETURNS_UPDATE",
];

/// Requested and actual cost of the `inventoryItem` query: the item, its variant and one level.
const INVENTORY_ITEM_COST: u32 = 3;

/// The value a root field returned, and the products it changed.
#[derive(Debug)]
pub(crate) struct Executed {
    /// The value of the root field in `data`.
    pub(crate) data: Value,
    pub(crate) changes: Vec<(ChangeKind, u64)>,
    pub(crate) actual_cost: u32,
}

/// Cost of every mutation, as the brief for the sandbox fixes it.
pub(crate) const MUTATION_COST: u32 = 10;

/// Returns the requested cost of a call before it runs.
pub(crate) fn requested_cost(call: &RootCall) -> u32 {
    match call.field {
        RootField::ProductVariants => {
            let first = argument::<i64>(&call.arguments, "first").ok().flatten().unwrap_or(0);
            2 + u32::try_from(first.clamp(0, 250)).unwrap_or(0)
        }
        RootField::InventoryItem => INVENTORY_ITEM_COST,
        RootField::WebhookSubscriptions => WEBHOOK_SUBSCRIPTIONS_COST,
        _ => MUTATION_COST,
    }
}

/// Runs one root field.
pub(crate) fn execute(store: &mut Store, call: &RootCall, now: DateTime<Utc>) -> Result<Executed, InvalidInput> {
    match call.field {
        RootField::ProductSet => product_set(store, &call.arguments, now),
        RootField::ProductUpdate => product_update(store, &call.arguments, now),
        RootField::ProductVariantsBulkUpdate => variants_bulk_update(store, &call.arguments, now),
        RootField::InventorySetQuantities => inventory_set_quantities(store, &call.arguments, now),
        RootField::MetafieldsSet => metafields_set(store, &call.arguments, now),
        RootField::ProductVariants => product_variants(store, &call.arguments),
        RootField::InventoryItem => inventory_item(store, &call.arguments),
        RootField::WebhookSubscriptions => webhook_subscriptions(store),
        RootField::WebhookSubscriptionCreate => webhook_subscription_create(store, &call.arguments),
        RootField::WebhookSubscriptionUpdate => webhook_subscription_update(store, &call.arguments),
    }
}

fn mutation_result(data: Value, changes: Vec<(ChangeKind, u64)>) -> Executed {
    Executed {
        data,
        changes,
        actual_cost: MUTATION_COST,
    }
}

/// The validated changes to one product.
#[derive(Debug, Default)]
pub(crate) struct ProductPatch {
    pub(crate) title: Option<String>,
    pub(crate) description_html: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) status: Option<ProductStatus>,
    /// Metafields to set; an empty value removes the metafield.
    pub(crate) metafields: Vec<MetafieldWrite>,
    pub(crate) images: Option<Vec<String>>,
    /// The complete variant list (set semantics), when given.
    pub(crate) variants: Option<Vec<VariantPatch>>,
}

#[derive(Debug, Clone)]
pub(crate) struct MetafieldWrite {
    pub(crate) namespace: String,
    pub(crate) key: String,
    pub(crate) field_type: String,
    pub(crate) value: String,
}

#[derive(Debug, Default)]
pub(crate) struct VariantPatch {
    pub(crate) id: Option<u64>,
    pub(crate) sku: Option<String>,
    pub(crate) price: Option<Decimal>,
    pub(crate) quantity: Option<i64>,
}

fn product_set(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
    now: DateTime<Utc>,
) -> Result<Executed, InvalidInput> {
    let input: ProductSetInput = required_argument(arguments, "input")?;
    let identifier: ProductSetIdentifiers = argument(arguments, "identifier")?.unwrap_or_default();
    let failed = |errors: Vec<Value>| {
        mutation_result(
            json!({"product": null, "productSetOperation": null, "userErrors": errors}),
            Vec::new(),
        )
    };

    let target = match set_target(store, &identifier, input.id.as_deref()) {
        Ok(target) => target,
        Err(error) => return Ok(failed(vec![error])),
    };
    let existing = target.and_then(|id| store.product(id));
    let mut errors = Vec::new();
    let mut patch = ProductPatch {
        title: input.title,
        description_html: input.description_html,
        handle: input.handle.or_else(|| identifier.handle.clone()),
        status: parse_status(input.status.as_deref(), &["input", "status"], &mut errors),
        metafields: metafield_writes(input.metafields, input.seo, "input", &mut errors),
        images: input
            .files
            .map(|files| files.into_iter().map(|file| file.original_source).collect()),
        variants: input
            .variants
            .map(|variants| variant_patches(variants, existing, &mut errors)),
    };
    let blank_title = patch.title.as_deref().map(|title| title.trim().is_empty());
    if blank_title == Some(true) || (existing.is_none() && blank_title.is_none()) {
        errors.push(user_error(&["input", "title"], "Title can't be blank", Some("BLANK")));
    }
    if !errors.is_empty() {
        return Ok(failed(errors));
    }

    let (id, kind, changed) = match target {
        Some(id) => (id, ChangeKind::Updated, apply_patch(store, id, patch, now)),
        None => {
            if let Some(custom_id) = &identifier.custom_id {
                let namespace = custom_id.namespace.clone().unwrap_or_else(|| APP_NAMESPACE.to_owned());
                if !patch
                    .metafields
                    .iter()
                    .any(|field| field.namespace == namespace && field.key == custom_id.key)
                {
                    patch.metafields.push(MetafieldWrite {
                        namespace,
                        key: custom_id.key.clone(),
                        field_type: "id".to_owned(),
                        value: custom_id.value.clone(),
                    });
                }
            }
            (create_product(store, patch, now), ChangeKind::Created, true)
        }
    };
    let node = store.product(id).map(product_node);
    let changes = if changed { vec![(kind, id)] } else { Vec::new() };
    Ok(mutation_result(
        json!({"product": node, "productSetOperation": null, "userErrors": []}),
        changes,
    ))
}

/// Finds the product a `productSet` updates, `None` meaning it creates one.
fn set_target(store: &Store, identifier: &ProductSetIdentifiers, input_id: Option<&str>) -> Result<Option<u64>, Value> {
    let missing = |path: &[&str]| user_error(path, "Product does not exist", Some("PRODUCT_DOES_NOT_EXIST"));
    if let Some(custom_id) = &identifier.custom_id {
        let namespace = custom_id.namespace.as_deref().unwrap_or(APP_NAMESPACE);
        return Ok(store.find_by_metafield(namespace, &custom_id.key, &custom_id.value));
    }
    if let Some(gid) = identifier.id.as_deref() {
        return existing_product(store, gid)
            .map(Some)
            .ok_or_else(|| missing(&["identifier", "id"]));
    }
    if let Some(handle) = identifier.handle.as_deref() {
        return Ok(store.find_by_handle(handle));
    }
    match input_id {
        Some(gid) => existing_product(store, gid)
            .map(Some)
            .ok_or_else(|| missing(&["input", "id"])),
        None => Ok(None),
    }
}

fn existing_product(store: &Store, gid: &str) -> Option<u64> {
    parse_gid(gid, "Product").filter(|id| store.product(*id).is_some())
}

fn product_update(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
    now: DateTime<Utc>,
) -> Result<Executed, InvalidInput> {
    let input: ProductUpdateInput = match argument(arguments, "product")? {
        Some(input) => input,
        None => required_argument(arguments, "input")?,
    };
    let failed = |errors: Vec<Value>| mutation_result(json!({"product": null, "userErrors": errors}), Vec::new());

    let Some(id) = input.id.as_deref().and_then(|gid| existing_product(store, gid)) else {
        return Ok(failed(vec![user_error(&["id"], "Product does not exist", None)]));
    };
    let mut errors = Vec::new();
    if input.title.as_deref().is_some_and(|title| title.trim().is_empty()) {
        errors.push(user_error(&["title"], "Title can't be blank", None));
    }
    let patch = ProductPatch {
        status: parse_status(input.status.as_deref(), &["status"], &mut errors),
        metafields: metafield_writes(input.metafields, input.seo, "metafields", &mut errors),
        title: input.title,
        description_html: input.description_html,
        handle: input.handle,
        images: None,
        variants: None,
    };
    if !errors.is_empty() {
        return Ok(failed(errors));
    }

    let changed = apply_patch(store, id, patch, now);
    let node = store.product(id).map(product_node);
    let changes = if changed {
        vec![(ChangeKind::Updated, id)]
    } else {
        Vec::new()
    };
    Ok(mutation_result(json!({"product": node, "userErrors": []}), changes))
}

fn variants_bulk_update(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
    now: DateTime<Utc>,
) -> Result<Executed, InvalidInput> {
    let product_gid: String = required_argument(arguments, "productId")?;
    let inputs: Vec<VariantsBulkInput> = required_argument(arguments, "variants")?;
    let failed = |errors: Vec<Value>| {
        mutation_result(
            json!({"product": null, "productVariants": null, "userErrors": errors}),
            Vec::new(),
        )
    };

    let Some(product) = parse_gid(&product_gid, "Product").and_then(|id| store.product(id)) else {
        return Ok(failed(vec![user_error(
            &["productId"],
            "Product does not exist",
            Some("PRODUCT_DOES_NOT_EXIST"),
        )]));
    };
    let mut errors = Vec::new();
    let mut patches = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let position = index.to_string();
        let variant_id = parse_gid(&input.id, "ProductVariant")
            .filter(|id| product.variants.iter().any(|variant| variant.id == *id));
        let Some(variant_id) = variant_id else {
            errors.push(user_error(
                &["variants", &position, "id"],
                "Product variant does not exist",
                Some("PRODUCT_VARIANT_DOES_NOT_EXIST"),
            ));
            continue;
        };
        let price = parse_price(input.price.as_deref(), &["variants", &position, "price"], &mut errors);
        patches.push(VariantPatch {
            id: Some(variant_id),
            sku: input.inventory_item.and_then(|item| item.sku),
            price,
            quantity: None,
        });
    }
    if !errors.is_empty() {
        return Ok(failed(errors));
    }

    let product_id = product.id;
    let updated_ids: Vec<u64> = patches.iter().filter_map(|patch| patch.id).collect();
    let changed = update_product(store, product_id, now, |product, _| {
        for patch in patches {
            if let Some(variant) = product.variants.iter_mut().find(|variant| Some(variant.id) == patch.id) {
                apply_variant_patch(variant, patch);
            }
        }
    });
    let product = store.product(product_id);
    let variants: Vec<Value> = product
        .map(|product| {
            product
                .variants
                .iter()
                .filter(|variant| updated_ids.contains(&variant.id))
                .map(|variant| variant_node(product, variant))
                .collect()
        })
        .unwrap_or_default();
    let changes = if changed {
        vec![(ChangeKind::Updated, product_id)]
    } else {
        Vec::new()
    };
    Ok(mutation_result(
        json!({"product": product.map(product_node), "productVariants": variants, "userErrors": []}),
        changes,
    ))
}

fn inventory_set_quantities(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
    now: DateTime<Utc>,
) -> Result<Executed, InvalidInput> {
    let input: InventorySetQuantitiesInput = required_argument(arguments, "input")?;
    let failed = |errors: Vec<Value>| {
        mutation_result(
            json!({"inventoryAdjustmentGroup": null, "userErrors": errors}),
            Vec::new(),
        )
    };

    let mut errors = Vec::new();
    if input.name != "available" && input.name != "on_hand" {
        errors.push(user_error(
            &["input", "name"],
            "The quantity name must be either 'available' or 'on_hand'.",
            Some("INVALID_NAME"),
        ));
    }
    if !INVENTORY_REASONS.contains(&input.reason.as_str()) {
        errors.push(user_error(
            &["input", "reason"],
            "The specified reason is invalid.",
            Some("INVALID_REASON"),
        ));
    }
    // Each entry: product id, variant id, inventory item id, new quantity, delta.
    let mut updates: Vec<(u64, u64, u64, i64, i64)> = Vec::new();
    for (index, quantity) in input.quantities.iter().enumerate() {
        let position = index.to_string();
        let with_position = |field: &str| {
            vec![
                "input".to_owned(),
                "quantities".to_owned(),
                position.clone(),
                field.to_owned(),
            ]
        };
        let item = parse_gid(&quantity.inventory_item_id, "InventoryItem")
            .and_then(|item_id| store.find_by_inventory_item(item_id).map(|found| (item_id, found)));
        let Some((item_id, (product_id, variant_id))) = item else {
            errors.push(path_error(
                with_position("inventoryItemId"),
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
            continue;
        };
        if quantity.location_id != LOCATION_GID {
            errors.push(path_error(
                with_position("locationId"),
                "The specified location could not be found.",
                "INVALID_LOCATION",
            ));
            continue;
        }
        if quantity.quantity > MAX_QUANTITY {
            errors.push(path_error(
                with_position("quantity"),
                "The quantity can't be higher than 1,000,000,000.",
                "INVALID_QUANTITY_TOO_HIGH",
            ));
            continue;
        }
        let current = store
            .product(product_id)
            .and_then(|product| product.variants.iter().find(|variant| variant.id == variant_id))
            .map_or(0, |variant| variant.inventory_quantity);
        if !input.ignore_compare_quantity {
            match quantity.compare_quantity {
                None => {
                    errors.push(path_error(
                        with_position("compareQuantity"),
                        "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
                        "COMPARE_QUANTITY_REQUIRED",
                    ));
                    continue;
                }
                Some(expected) if expected != current => {
                    errors.push(path_error(
                        with_position("compareQuantity"),
                        "The compareQuantity value does not match persisted value.",
                        "COMPARE_QUANTITY_STALE",
                    ));
                    continue;
                }
                Some(_) => {}
            }
        }
        updates.push((
            product_id,
            variant_id,
            item_id,
            quantity.quantity,
            quantity.quantity - current,
        ));
    }
    if !errors.is_empty() {
        return Ok(failed(errors));
    }

    let mut changes = Vec::new();
    let mut change_nodes = Vec::new();
    for (product_id, variant_id, item_id, quantity, delta) in updates {
        let changed = update_product(store, product_id, now, |product, _| {
            if let Some(variant) = product.variants.iter_mut().find(|variant| variant.id == variant_id) {
                variant.inventory_quantity = quantity;
            }
        });
        if changed && !changes.contains(&(ChangeKind::Updated, product_id)) {
            changes.push((ChangeKind::Updated, product_id));
        }
        if changed {
            changes.push((ChangeKind::InventoryLevel, item_id));
        }
        change_nodes.push(json!({
            "name": input.name,
            "delta": delta,
            "quantityAfterChange": null,
            "item": {"id": super::model::inventory_item_gid(item_id)},
            "location": {"id": LOCATION_GID},
        }));
    }
    let group = json!({
        "createdAt": graphql_time(now),
        "reason": input.reason,
        "referenceDocumentUri": input.reference_document_uri,
        "changes": change_nodes,
    });
    Ok(mutation_result(
        json!({"inventoryAdjustmentGroup": group, "userErrors": []}),
        changes,
    ))
}

fn path_error(path: Vec<String>, message: &str, code: &str) -> Value {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    user_error(&path, message, Some(code))
}

fn metafields_set(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
    now: DateTime<Utc>,
) -> Result<Executed, InvalidInput> {
    let inputs: Vec<MetafieldsSetInput> = required_argument(arguments, "metafields")?;
    let failed = |errors: Vec<Value>| mutation_result(json!({"metafields": null, "userErrors": errors}), Vec::new());

    if inputs.len() > 25 {
        return Ok(failed(vec![user_error(
            &["metafields"],
            "Exceeded the maximum metafields input limit of 25.",
            Some("LESS_THAN_OR_EQUAL_TO"),
        )]));
    }
    let mut errors = Vec::new();
    let mut writes: Vec<(u64, MetafieldWrite)> = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let position = index.to_string();
        let Some(owner) = existing_product(store, &input.owner_id) else {
            errors.push(user_error(
                &["metafields", &position, "ownerId"],
                "Owner does not exist.",
                Some("INVALID_VALUE"),
            ));
            continue;
        };
        let Some(field_type) = input.r#type.filter(|field_type| !field_type.is_empty()) else {
            errors.push(user_error(
                &["metafields", &position, "type"],
                "Type can't be blank.",
                Some("BLANK"),
            ));
            continue;
        };
        if let Err(message) = check_metafield_value(&field_type, &input.value) {
            errors.push(user_error(
                &["metafields", &position, "value"],
                message,
                Some("INVALID_VALUE"),
            ));
            continue;
        }
        writes.push((
            owner,
            MetafieldWrite {
                namespace: input.namespace.unwrap_or_else(|| APP_NAMESPACE.to_owned()),
                key: input.key,
                field_type,
                value: input.value,
            },
        ));
    }
    if !errors.is_empty() {
        return Ok(failed(errors));
    }

    let mut changes = Vec::new();
    let mut nodes = Vec::new();
    for (owner, write) in writes {
        let changed = update_product(store, owner, now, |product, allocate| {
            set_metafield(
                product,
                &write.namespace,
                &write.key,
                &write.field_type,
                &write.value,
                allocate,
            );
        });
        if changed && !changes.contains(&(ChangeKind::Updated, owner)) {
            changes.push((ChangeKind::Updated, owner));
        }
        let node = store
            .product(owner)
            .and_then(|product| {
                product
                    .metafields
                    .iter()
                    .find(|field| field.namespace == write.namespace && field.key == write.key)
            })
            .map(metafield_node);
        nodes.push(node);
    }
    Ok(mutation_result(json!({"metafields": nodes, "userErrors": []}), changes))
}

fn product_variants(store: &Store, arguments: &BTreeMap<String, Box<RawValue>>) -> Result<Executed, InvalidInput> {
    let first: i64 = argument(arguments, "first")?
        .ok_or_else(|| InvalidInput("you must provide one of first or last".to_owned()))?;
    if !(1..=250).contains(&first) {
        return Err(InvalidInput("argument 'first' must be between 1 and 250".to_owned()));
    }
    let query: Option<String> = argument(arguments, "query")?;
    let terms = query.as_deref().map(search_terms).unwrap_or_default();

    let matches: Vec<(&Product, &Variant)> = store
        .products()
        .flat_map(|product| product.variants.iter().map(move |variant| (product, variant)))
        .filter(|(product, variant)| {
            terms
                .iter()
                .all(|(field, value)| term_matches(product, variant, field, value))
        })
        .collect();
    let limit = usize::try_from(first).unwrap_or(250);
    let page: Vec<Value> = matches
        .iter()
        .take(limit)
        .map(|(product, variant)| variant_node(product, variant))
        .collect();
    let edges: Vec<Value> = page
        .iter()
        .map(|node| json!({"cursor": node["legacyResourceId"], "node": node}))
        .collect();
    let returned = u32::try_from(page.len()).unwrap_or(u32::MAX);
    Ok(Executed {
        data: json!({
            "nodes": page,
            "edges": edges,
            "pageInfo": {"hasNextPage": matches.len() > limit, "hasPreviousPage": false},
        }),
        changes: Vec::new(),
        actual_cost: 2 + returned,
    })
}

/// Serves `inventoryItem(id:)`: the item's SKU, its variant and product, and the available
/// quantity at the one location. An unknown id gives `null`, as Shopify does.
fn inventory_item(store: &Store, arguments: &BTreeMap<String, Box<RawValue>>) -> Result<Executed, InvalidInput> {
    let gid: String = required_argument(arguments, "id")?;
    let found = parse_gid(&gid, "InventoryItem")
        .and_then(|item_id| store.find_by_inventory_item(item_id))
        .and_then(|(product_id, variant_id)| {
            let product = store.product(product_id)?;
            let variant = product.variants.iter().find(|variant| variant.id == variant_id)?;
            Some((product, variant))
        });
    let data = match found {
        Some((product, variant)) => json!({
            "id": gid,
            "sku": variant.sku,
            "tracked": true,
            "updatedAt": graphql_time(variant.updated_at),
            "variant": {"id": super::model::variant_gid(variant.id), "sku": variant.sku, "product": {"id": product.gid()}},
            "inventoryLevel": {
                "location": {"id": LOCATION_GID},
                "quantities": [{"name": "available", "quantity": variant.inventory_quantity}],
            },
        }),
        None => Value::Null,
    };
    Ok(Executed {
        data,
        changes: Vec::new(),
        actual_cost: INVENTORY_ITEM_COST,
    })
}

fn subscription_node(subscription: &WebhookSubscription) -> Value {
    json!({
        "id": subscription.gid(),
        "topic": subscription.topic,
        "format": "JSON",
        "uri": subscription.callback_url,
        "callbackUrl": subscription.callback_url,
        "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": subscription.callback_url},
    })
}

/// Serves `webhookSubscriptions`: every subscription on one page.
fn webhook_subscriptions(store: &Store) -> Result<Executed, InvalidInput> {
    let nodes: Vec<Value> = store.subscriptions.iter().map(subscription_node).collect();
    Ok(Executed {
        data: json!({"nodes": nodes, "pageInfo": {"hasNextPage": false, "hasPreviousPage": false}}),
        changes: Vec::new(),
        actual_cost: WEBHOOK_SUBSCRIPTIONS_COST,
    })
}

/// Checks a subscription's address: HTTPS, or HTTP on the loopback interface, which the sandbox
/// allows so that local receivers can subscribe.
fn check_address(address: Option<&str>) -> Result<String, Value> {
    let field = &["webhookSubscription", "callbackUrl"];
    let Some(address) = address.filter(|address| !address.is_empty()) else {
        return Err(user_error(field, "Address can't be blank", None));
    };
    if address.starts_with("https://") || address.starts_with("http://127.0.0.1:") {
        Ok(address.to_owned())
    } else {
        Err(user_error(field, "Address protocol http:// is not supported", None))
    }
}

fn webhook_subscription_create(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
) -> Result<Executed, InvalidInput> {
    let topic: String = required_argument(arguments, "topic")?;
    let input: WebhookSubscriptionInput = required_argument(arguments, "webhookSubscription")?;
    let failed =
        |error: Value| mutation_result(json!({"webhookSubscription": null, "userErrors": [error]}), Vec::new());

    if !WEBHOOK_TOPICS.contains(&topic.as_str()) {
        return Err(InvalidInput(format!(
            "argument 'topic' has an invalid value: {topic} is not a supported topic"
        )));
    }
    if input.format.as_deref().is_some_and(|format| format != "JSON") {
        return Ok(failed(user_error(
            &["webhookSubscription", "format"],
            "Format is not supported",
            None,
        )));
    }
    let address = match check_address(input.address()) {
        Ok(address) => address,
        Err(error) => return Ok(failed(error)),
    };
    let already_subscribed = store
        .subscriptions
        .iter()
        .any(|subscription| subscription.topic == topic && subscription.callback_url == address);
    if already_subscribed {
        let field = &["webhookSubscription", "callbackUrl"];
        return Ok(failed(user_error(
            field,
            "Address for this topic has already been taken",
            None,
        )));
    }

    let subscription = WebhookSubscription {
        id: store.allocate_id(),
        topic,
        callback_url: address,
    };
    let node = subscription_node(&subscription);
    store.subscriptions.push(subscription);
    Ok(mutation_result(
        json!({"webhookSubscription": node, "userErrors": []}),
        Vec::new(),
    ))
}

fn webhook_subscription_update(
    store: &mut Store,
    arguments: &BTreeMap<String, Box<RawValue>>,
) -> Result<Executed, InvalidInput> {
    let gid: String = required_argument(arguments, "id")?;
    let input: WebhookSubscriptionInput = required_argument(arguments, "webhookSubscription")?;
    let failed =
        |error: Value| mutation_result(json!({"webhookSubscription": null, "userErrors": [error]}), Vec::new());
    let id = parse_gid(&gid, "WebhookSubscription");
    let Some(subscription) = store
        .subscriptions
        .iter_mut()
        .find(|subscription| Some(subscription.id) == id)
    else {
        return Ok(failed(user_error(&["id"], "Webhook subscription does not exist", None)));
    };
    if input.address().is_some() {
        match check_address(input.address()) {
            Ok(address) => subscription.callback_url = address,
            Err(error) => return Ok(failed(error)),
        }
    }
    let node = subscription_node(subscription);
    Ok(mutation_result(
        json!({"webhookSubscription": node, "userErrors": []}),
        Vec::new(),
    ))
}

/// Splits a search query into `field:value` terms; values may be quoted. Free-text terms are
/// dropped, because the sandbox implements only `sku:`, `id:` and `product_id:`.
fn search_terms(query: &str) -> Vec<(String, String)> {
    let mut terms = Vec::new();
    let mut rest = query.trim();
    while !rest.is_empty() {
        let (term, remaining) = match rest.find(':') {
            Some(colon) if !rest[..colon].contains(char::is_whitespace) => {
                let field = &rest[..colon];
                let after = &rest[colon + 1..];
                let (value, remaining) = match after.chars().next() {
                    Some(quote @ ('"' | '\'')) => {
                        let inner = &after[1..];
                        let end = inner.find(quote).unwrap_or(inner.len());
                        (&inner[..end], inner.get(end + 1..).unwrap_or(""))
                    }
                    _ => {
                        let end = after.find(char::is_whitespace).unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                (Some((field.to_owned(), value.to_owned())), remaining)
            }
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (None, &rest[end..])
            }
        };
        terms.extend(term);
        rest = remaining.trim_start();
    }
    terms
}

fn term_matches(product: &Product, variant: &Variant, field: &str, value: &str) -> bool {
    match field {
        "sku" => variant.sku == value,
        "id" => variant.id.to_string() == value || super::model::variant_gid(variant.id) == value,
        "product_id" => product.id.to_string() == value,
        _ => true,
    }
}

fn parse_status(status: Option<&str>, path: &[&str], errors: &mut Vec<Value>) -> Option<ProductStatus> {
    let status = status?;
    let parsed = ProductStatus::parse(status);
    if parsed.is_none() {
        errors.push(user_error(
            path,
            format!("Status '{status}' is not ACTIVE, DRAFT or ARCHIVED"),
            Some("INVALID"),
        ));
    }
    parsed
}

fn parse_price(price: Option<&RawValue>, path: &[&str], errors: &mut Vec<Value>) -> Option<Decimal> {
    let price = price?;
    match money(price) {
        Ok(amount) if amount.is_sign_negative() => {
            errors.push(user_error(
                path,
                "Price must be greater than or equal to 0",
                Some("INVALID"),
            ));
            None
        }
        Ok(amount) => Some(amount),
        Err(message) => {
            errors.push(user_error(
                path,
                format!("Price is invalid: {message}"),
                Some("INVALID"),
            ));
            None
        }
    }
}

/// Validates metafield inputs and the SEO input, which Shopify stores as `global` metafields.
fn metafield_writes(
    metafields: Option<Vec<MetafieldInput>>,
    seo: Option<SeoInput>,
    path_root: &str,
    errors: &mut Vec<Value>,
) -> Vec<MetafieldWrite> {
    let mut writes = Vec::new();
    for (index, input) in metafields.unwrap_or_default().into_iter().enumerate() {
        let position = index.to_string();
        let (Some(key), Some(field_type), Some(value)) = (input.key, input.r#type, input.value) else {
            errors.push(user_error(
                &[path_root, "metafields", &position],
                "Metafield key, type and value are required",
                Some("BLANK"),
            ));
            continue;
        };
        if let Err(message) = check_metafield_value(&field_type, &value) {
            errors.push(user_error(
                &[path_root, "metafields", &position, "value"],
                message,
                Some("INVALID_VALUE"),
            ));
            continue;
        }
        writes.push(MetafieldWrite {
            namespace: input.namespace.unwrap_or_else(|| APP_NAMESPACE.to_owned()),
            key,
            field_type,
            value,
        });
    }
    if let Some(seo) = seo {
        let tags = [
            (SEO_TITLE_KEY, "single_line_text_field", seo.title),
            (SEO_DESCRIPTION_KEY, "multi_line_text_field", seo.description),
        ];
        for (key, field_type, value) in tags {
            if let Some(value) = value {
                writes.push(MetafieldWrite {
                    namespace: SEO_NAMESPACE.to_owned(),
                    key: key.to_owned(),
                    field_type: field_type.to_owned(),
                    value,
                });
            }
        }
    }
    writes
}

/// Checks a metafield value against the types whose syntax the sandbox checks: `json`, `number_integer` and `boolean`.
fn check_metafield_value(field_type: &str, value: &str) -> Result<(), String> {
    match field_type {
        "json" => serde_json::from_str::<IgnoredAny>(value)
            .map(|_| ())
            .map_err(|error| format!("Value is invalid JSON: {error}")),
        "number_integer" => value
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "Value must be an integer.".to_owned()),
        "boolean" if value != "true" && value != "false" => Err("Value must be true or false.".to_owned()),
        _ => Ok(()),
    }
}

fn variant_patches(
    inputs: Vec<VariantSetInput>,
    existing: Option<&Product>,
    errors: &mut Vec<Value>,
) -> Vec<VariantPatch> {
    let mut patches = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let position = index.to_string();
        let id = match input.id.as_deref() {
            None => None,
            Some(gid) => {
                let id = parse_gid(gid, "ProductVariant").filter(|id| {
                    existing.is_some_and(|product| product.variants.iter().any(|variant| variant.id == *id))
                });
                if id.is_none() {
                    errors.push(user_error(
                        &["input", "variants", &position, "id"],
                        "Product variant does not exist",
                        Some("PRODUCT_VARIANT_DOES_NOT_EXIST"),
                    ));
                }
                id
            }
        };
        let price = parse_price(
            input.price.as_deref(),
            &["input", "variants", &position, "price"],
            errors,
        );
        let mut quantity = None;
        for (level, inventory) in input.inventory_quantities.unwrap_or_default().into_iter().enumerate() {
            let level = level.to_string();
            if inventory.location_id != LOCATION_GID {
                errors.push(user_error(
                    &[
                        "input",
                        "variants",
                        &position,
                        "inventoryQuantities",
                        &level,
                        "locationId",
                    ],
                    "The specified location could not be found.",
                    Some("INVALID_LOCATION"),
                ));
            } else if inventory.name != "available" && inventory.name != "on_hand" {
                errors.push(user_error(
                    &["input", "variants", &position, "inventoryQuantities", &level, "name"],
                    "The quantity name must be either 'available' or 'on_hand'.",
                    Some("INVALID_NAME"),
                ));
            } else {
                quantity = Some(inventory.quantity);
            }
        }
        patches.push(VariantPatch {
            id,
            sku: input.sku.or_else(|| input.inventory_item.and_then(|item| item.sku)),
            price,
            quantity,
        });
    }
    patches
}

fn apply_variant_patch(variant: &mut Variant, patch: VariantPatch) {
    if let Some(sku) = patch.sku {
        variant.sku = sku;
    }
    if let Some(price) = patch.price {
        variant.price = price;
    }
    if let Some(quantity) = patch.quantity {
        variant.inventory_quantity = quantity;
    }
}

/// Takes a product out of the store, lets `change` edit it, and stamps it when it changed.
/// `change` gets an id allocator for new variants, images and metafields.
pub(crate) fn update_product(
    store: &mut Store,
    id: u64,
    now: DateTime<Utc>,
    change: impl FnOnce(&mut Product, &mut dyn FnMut() -> u64),
) -> bool {
    let Some(before) = store.product(id).cloned() else {
        return false;
    };
    let mut product = before.clone();
    let mut allocate = || store.allocate_id();
    change(&mut product, &mut allocate);
    let changed = product != before;
    if changed {
        stamp_changes(&mut product, Some(&before), now);
        store.insert(product);
    }
    changed
}

/// Applies a validated patch to a stored product and returns whether it changed.
pub(crate) fn apply_patch(store: &mut Store, id: u64, patch: ProductPatch, now: DateTime<Utc>) -> bool {
    let handle = patch
        .handle
        .as_deref()
        .map(|handle| store.unique_handle(handle, Some(id)));
    update_product(store, id, now, |product, allocate| {
        if let Some(title) = patch.title {
            product.title = title;
        }
        if let Some(description) = patch.description_html {
            product.description_html = description;
        }
        if let Some(handle) = handle {
            product.handle = handle;
        }
        if let Some(status) = patch.status {
            product.status = status;
        }
        for write in &patch.metafields {
            set_metafield(
                product,
                &write.namespace,
                &write.key,
                &write.field_type,
                &write.value,
                &mut *allocate,
            );
        }
        if let Some(images) = patch.images {
            let current: Vec<&str> = product.images.iter().map(|image| image.src.as_str()).collect();
            if current != images.iter().map(String::as_str).collect::<Vec<_>>() {
                product.images = images.into_iter().map(|src| Image { id: allocate(), src }).collect();
            }
        }
        if let Some(variants) = patch.variants {
            let mut next = Vec::new();
            for variant_patch in variants {
                let matched = product
                    .variants
                    .iter()
                    .find(|variant| Some(variant.id) == variant_patch.id)
                    .or_else(|| {
                        let sku = variant_patch.sku.as_deref()?;
                        product.variants.iter().find(|variant| variant.sku == sku)
                    })
                    .cloned();
                let mut variant = matched.unwrap_or_else(|| new_variant(&mut *allocate, now));
                apply_variant_patch(&mut variant, variant_patch);
                next.push(variant);
            }
            product.variants = next;
        }
    })
}

fn new_variant(allocate: &mut dyn FnMut() -> u64, now: DateTime<Utc>) -> Variant {
    let mut price = Decimal::ZERO;
    price.rescale(2);
    Variant {
        id: allocate(),
        sku: String::new(),
        price,
        inventory_item_id: allocate(),
        inventory_quantity: 0,
        updated_at: now,
    }
}

/// Creates a product from a validated patch and returns its id.
pub(crate) fn create_product(store: &mut Store, patch: ProductPatch, now: DateTime<Utc>) -> u64 {
    let id = store.allocate_id();
    let title = patch.title.clone().unwrap_or_default();
    let handle = store.unique_handle(patch.handle.as_deref().unwrap_or(&title), None);
    let mut allocate = || store.allocate_id();
    let mut product = Product {
        id,
        title,
        description_html: String::new(),
        handle,
        status: ProductStatus::Active,
        images: Vec::new(),
        metafields: Vec::new(),
        variants: Vec::new(),
        created_at: now,
        updated_at: now,
        published_at: None,
    };
    if patch.variants.is_none() {
        product.variants.push(new_variant(&mut allocate, now));
    }
    store.insert(product);
    let patch = ProductPatch { handle: None, ..patch };
    apply_patch(store, id, patch, now);
    if let Some(product) = store.product_mut(id) {
        stamp_changes(product, None, now);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_reads_quoted_values() {
        assert_eq!(
            search_terms(r#"sku:"MUG RED" id:12 free"#),
            vec![
                ("sku".to_owned(), "MUG RED".to_owned()),
                ("id".to_owned(), "12".to_owned())
            ]
        );
        assert_eq!(
            search_terms("sku:MUG-RED"),
            vec![("sku".to_owned(), "MUG-RED".to_owned())]
        );
    }

    #[test]
    fn metafield_value_checks_json() {
        assert!(check_metafield_value("json", r#"[{"a":1}]"#).is_ok());
        assert!(check_metafield_value("json", "{").is_err());
        assert!(check_metafield_value("single_line_text_field", "{").is_ok());
    }
}
