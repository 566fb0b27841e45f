//! The GraphQL documents the storefront client sends, their variables, and reading responses.

use std::time::Duration;

use fieldsync_core::ports::SystemError;
use fieldsync_core::{RecordKey, SystemId};
use serde_json::{json, Map, Value};

use super::fields::ProductFields;
use crate::http::{rejected, unavailable, UnexpectedResponse};

pub(crate) const PRODUCT_SET: &str =
    "mutation FieldsyncProductSet($identifier: ProductSetIdentifiers, $input: ProductSetInput!) {
  productSet(identifier: $identifier, input: $input, synchronous: true) {
    product { id variants(first: 100) { nodes { id sku inventoryItem { id } } } }
    userErrors { field message code }
  }
}";

pub(crate) const PRODUCT_UPDATE: &str = "mutation FieldsyncProductUpdate($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id updatedAt }
    userErrors { field message }
  }
}";

pub(crate) const METAFIELDS_SET: &str = "mutation FieldsyncMetafields($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { key namespace }
    userErrors { field message code }
  }
}";

pub(crate) const VARIANTS_BULK_UPDATE: &str =
    "mutation FieldsyncVariantPrice($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price }
    userErrors { field message code }
  }
}";

pub(crate) const INVENTORY_SET: &str = "mutation FieldsyncInventory($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { changes { name delta } }
    userErrors { field message code }
  }
}";

pub(crate) const INVENTORY_ITEM: &str = "query FieldsyncInventoryItem($id: ID!, $locationId: ID!) {
  inventoryItem(id: $id) {
    id sku
    variant { id sku product { id } }
    inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } }
  }
}";

pub(crate) const WEBHOOK_SUBSCRIPTIONS: &str = "query FieldsyncWebhooks {
  webhookSubscriptions(first: 100) {
    nodes { id topic endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
  }
}";

pub(crate) const WEBHOOK_SUBSCRIPTION_CREATE: &str =
    "mutation FieldsyncWebhookCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic }
    userErrors { field message }
  }
}";

pub(crate) const WEBHOOK_SUBSCRIPTION_UPDATE: &str =
    "mutation FieldsyncWebhookUpdate($id: ID!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionUpdate(id: $id, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic }
    userErrors { field message }
  }
}";

pub(crate) const FIND_VARIANT: &str = "query FieldsyncFindVariant($query: String!) {
  productVariants(first: 2, query: $query) {
    nodes { id sku inventoryQuantity inventoryItem { id } product { id } }
  }
}";

/// The namespace and key of the metafield that contains fieldsync's external id (the custom id).
pub(crate) const KEY_NAMESPACE: &str = "fieldsync";
pub(crate) const KEY_KEY: &str = "key";

/// One entry of a mutation's `userErrors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserError {
    pub(crate) code: Option<String>,
    pub(crate) text: String,
}

/// Reads the `userErrors` of the root field `root` in `data`.
pub(crate) fn user_errors(data: &Value, root: &str) -> Vec<UserError> {
    data[root]["userErrors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    let field = error["field"]
                        .as_array()
                        .map(|path| path.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."))
                        .unwrap_or_default();
                    let message = error["message"].as_str().unwrap_or("no message");
                    let code = error["code"].as_str().map(str::to_owned);
                    let text = match (&code, field.is_empty()) {
                        (Some(code), false) => format!("{field}: {message} ({code})"),
                        (Some(code), true) => format!("{message} ({code})"),
                        (None, false) => format!("{field}: {message}"),
                        (None, true) => message.to_owned(),
                    };
                    UserError { code, text }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Turns `userErrors` into a rejection, or passes when there are none.
pub(crate) fn reject_user_errors(
    system: &SystemId,
    record: &RecordKey,
    data: &Value,
    root: &str,
) -> Result<(), SystemError> {
    let errors = user_errors(data, root);
    if errors.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = errors.into_iter().map(|error| error.text).collect();
    Err(rejected(system, record, format!("{root} failed: {}", text.join("; "))))
}

/// Classifies the top-level `errors` of a 200 response by their `extensions.code`.
pub(crate) fn top_level_error(system: &SystemId, record: &RecordKey, body: &Value) -> Option<SystemError> {
    let errors = body.get("errors")?;
    let list = errors
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![json!({"message": errors})]);
    let code_of = |error: &Value| error["extensions"]["code"].as_str().map(str::to_owned);
    if list.iter().any(|error| code_of(error).as_deref() == Some("THROTTLED")) {
        return Some(SystemError::RateLimited {
            system: system.clone(),
            retry_after: throttle_wait(body),
        });
    }
    // A missing access scope is fixed by an operator granting it, as a refused token is, so the
    // write stays queued instead of being dropped.
    if list
        .iter()
        .any(|error| code_of(error).as_deref() == Some("ACCESS_DENIED"))
    {
        return Some(unavailable(system, UnexpectedResponse("access denied".to_owned())));
    }
    if list
        .iter()
        .any(|error| code_of(error).as_deref() == Some("INTERNAL_SERVER_ERROR"))
    {
        return Some(unavailable(
            system,
            UnexpectedResponse("internal server error".to_owned()),
        ));
    }
    let messages: Vec<String> = list
        .iter()
        .map(|error| match &error["message"] {
            Value::String(message) => message.clone(),
            other => other.to_string(),
        })
        .collect();
    Some(rejected(
        system,
        record,
        format!("GraphQL errors: {}", messages.join("; ")),
    ))
}

/// Computes how long until the bucket contains the requested cost: the missing points divided by
/// the restore rate, from `extensions.cost`.
pub(crate) fn throttle_wait(body: &Value) -> Option<Duration> {
    let cost = &body["extensions"]["cost"];
    let requested = cost["requestedQueryCost"].as_f64()?;
    let available = cost["throttleStatus"]["currentlyAvailable"].as_f64()?;
    let restore_rate = cost["throttleStatus"]["restoreRate"].as_f64()?;
    if restore_rate <= 0.0 {
        return None;
    }
    let seconds = ((requested - available) / restore_rate).max(0.0);
    Duration::try_from_secs_f64(seconds).ok()
}

/// Builds the `productSet` input of a create: the product fields, the custom-id metafield and
/// one variant with the record's key as SKU.
pub(crate) fn product_set_input(fields: &ProductFields, external_id: &str, sku: &str, location_id: &str) -> Value {
    let mut input = product_level_input(fields);
    let mut metafields = input
        .remove("metafields")
        .and_then(|value| value.as_array().cloned())
        .unwrap_or_default();
    metafields.push(json!({"namespace": KEY_NAMESPACE, "key": KEY_KEY, "type": "id", "value": external_id}));
    input.insert("metafields".to_owned(), Value::Array(metafields));
    if let Some(images) = &fields.images {
        let files: Vec<Value> = images
            .iter()
            .map(|url| json!({"originalSource": url, "contentType": "IMAGE"}))
            .collect();
        input.insert("files".to_owned(), Value::Array(files));
    }

    let mut variant = Map::new();
    variant.insert(
        "optionValues".to_owned(),
        json!([{"optionName": "Title", "name": "Default Title"}]),
    );
    variant.insert("sku".to_owned(), json!(sku));
    if let Some(price) = fields.price {
        variant.insert("price".to_owned(), json!(price.to_string()));
    }
    if let Some(quantity) = fields.inventory {
        variant.insert(
            "inventoryQuantities".to_owned(),
            json!([{"locationId": location_id, "name": "available", "quantity": quantity}]),
        );
    }
    input.insert(
        "productOptions".to_owned(),
        json!([{"name": "Title", "values": [{"name": "Default Title"}]}]),
    );
    input.insert("variants".to_owned(), json!([variant]));
    Value::Object(input)
}

/// Builds the product-level part of an input: title, description, handle, status, SEO and the
/// customer-prices metafield.
pub(crate) fn product_level_input(fields: &ProductFields) -> Map<String, Value> {
    let mut input = Map::new();
    if let Some(title) = &fields.title {
        input.insert("title".to_owned(), json!(title));
    }
    if let Some(description) = &fields.description_html {
        input.insert("descriptionHtml".to_owned(), json!(description));
    }
    if let Some(handle) = &fields.handle {
        input.insert("handle".to_owned(), json!(handle));
    }
    if let Some(published) = fields.published {
        input.insert("status".to_owned(), json!(if published { "ACTIVE" } else { "DRAFT" }));
    }
    if fields.meta_title.is_some() || fields.meta_description.is_some() {
        let mut seo = Map::new();
        if let Some(title) = &fields.meta_title {
            seo.insert("title".to_owned(), json!(title));
        }
        if let Some(description) = &fields.meta_description {
            seo.insert("description".to_owned(), json!(description));
        }
        input.insert("seo".to_owned(), Value::Object(seo));
    }
    if let Some(prices) = &fields.customer_prices {
        input.insert(
            "metafields".to_owned(),
            json!([{"namespace": KEY_NAMESPACE, "key": "customer_prices", "type": "json", "value": prices}]),
        );
    }
    input
}

/// Builds the `metafieldsSet` inputs of an update: Shopify keeps a product's SEO title and
/// description as the `global.title_tag` and `global.description_tag` metafields, and fieldsync
/// keeps customer prices in `fieldsync.customer_prices`.
pub(crate) fn metafield_inputs(fields: &ProductFields, product_gid: &str) -> Vec<Value> {
    let mut inputs = Vec::new();
    let mut add = |namespace: &str, key: &str, field_type: &str, value: &str| {
        inputs.push(json!({
            "ownerId": product_gid, "namespace": namespace, "key": key, "type": field_type, "value": value,
        }));
    };
    if let Some(title) = &fields.meta_title {
        add("global", "title_tag", "single_line_text_field", title);
    }
    if let Some(description) = &fields.meta_description {
        add("global", "description_tag", "multi_line_text_field", description);
    }
    if let Some(prices) = &fields.customer_prices {
        add(KEY_NAMESPACE, "customer_prices", "json", prices);
    }
    inputs
}

/// Quotes a value for a search query term, such as `sku:"MUG RED"`.
pub(crate) fn search_value(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Returns the numeric id of a global id such as `gid://shopify/Product/12`.
pub(crate) fn numeric_id(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_is_retryable() {
        let body = json!({"errors": [{"message": "Access denied for productUpdate field.",
            "extensions": {"code": "ACCESS_DENIED"}}]});
        let record = RecordKey::new("demo", "product", "MUG-RED");
        let error = top_level_error(&SystemId::new("storefront"), &record, &body).unwrap();
        assert!(matches!(error, SystemError::Unavailable { .. }), "{error:?}");
        assert!(error.is_retryable());
    }

    #[test]
    fn throttle_wait_divides_missing_points_by_rate() {
        let body = json!({"extensions": {"cost": {
            "requestedQueryCost": 10,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 4, "restoreRate": 50.0},
        }}});
        assert_eq!(throttle_wait(&body), Some(Duration::from_millis(120)));
    }

    #[test]
    fn user_errors_join_path_and_code() {
        let data = json!({"inventorySetQuantities": {"userErrors": [
            {"field": ["input", "quantities", "0", "compareQuantity"], "message": "stale", "code": "COMPARE_QUANTITY_STALE"}
        ]}});
        let errors = user_errors(&data, "inventorySetQuantities");
        assert_eq!(errors[0].code.as_deref(), Some("COMPARE_QUANTITY_STALE"));
        assert_eq!(
            errors[0].text,
            "input.quantities.0.compareQuantity: stale (COMPARE_QUANTITY_STALE)"
        );
    }

    #[test]
    fn numeric_id_reads_last_segment() {
        assert_eq!(
            numeric_id("gid://shopify/ProductVariant/7000000002"),
            Some(7_000_000_002)
        );
        assert_eq!(numeric_id("gid://shopify/Product/"), None);
    }
}
