//! The `customers` and `salesOrders` handlers: list with `$filter`, read, create (sales orders
//! with their lines in one deep insert), update with `If-Match`, and delete.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::api::{
    body_error, entity_changed, entity_response, if_match, list_page, not_found, odata_error, require_if_match,
    ApiRequest, Precondition,
};
use super::documents::{
    customer_json, line_json, sales_order_json, Customer, CustomerEdit, LineWrite, OrderStatus, OrderWrite, SalesOrder,
    SalesOrderLine,
};
use super::model::BodyError;
use super::notify::{ChangeType, Collection};
use super::{Shared, State};
use crate::delivery::new_uuid;

/// The only navigation property `$expand` accepts.
const ORDER_LINES: &str = "salesOrderLines";

/// Rejects `$expand` on a resource that has nothing to expand, or with another value than
/// `salesOrderLines`.
pub(super) fn check_expand(expands: bool, request: &ApiRequest) -> Option<Response> {
    let value = request.query.get("$expand")?;
    if expands && value == ORDER_LINES {
        return None;
    }
    Some(odata_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("The sandbox supports $expand=salesOrderLines on sales orders only, not '{value}' here."),
    ))
}

fn expands_lines(request: &ApiRequest) -> bool {
    request.query.get("$expand").is_some_and(|value| value == ORDER_LINES)
}

fn method_not_allowed(method: &Method) -> Response {
    odata_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest_MethodNotAllowed",
        format!("'{method}' requests are not allowed for this resource."),
    )
}

pub(super) fn route_collection(
    shared: &Arc<Shared>,
    method: &Method,
    collection: Collection,
    request: &ApiRequest,
) -> Response {
    match (collection, method) {
        (Collection::Customers, &Method::GET) => {
            let state = shared.lock_state();
            let customers: Vec<&Customer> = state.customers.values().collect();
            list_page(
                shared,
                request,
                collection,
                customers,
                |customer| &customer.number,
                |customer| customer_json(customer, None),
            )
        }
        (Collection::SalesOrders, &Method::GET) => {
            let expand = expands_lines(request);
            let state = shared.lock_state();
            let orders: Vec<&SalesOrder> = state.sales_orders.values().collect();
            list_page(
                shared,
                request,
                collection,
                orders,
                |order| &order.number,
                |order| sales_order_json(order, None, expand),
            )
        }
        (Collection::Customers, &Method::POST) => create_customer(shared, request),
        (Collection::SalesOrders, &Method::POST) => create_sales_order(shared, request),
        _ => method_not_allowed(method),
    }
}

pub(super) fn route_entity(
    shared: &Arc<Shared>,
    method: &Method,
    collection: Collection,
    id: &str,
    request: &ApiRequest,
) -> Response {
    match (collection, method) {
        (Collection::Customers, &Method::GET) => match shared.lock_state().customers.get(id) {
            Some(customer) => customer_response(shared, request, StatusCode::OK, customer),
            None => not_found("customer"),
        },
        (Collection::SalesOrders, &Method::GET) => match shared.lock_state().sales_orders.get(id) {
            Some(order) => order_response(shared, request, StatusCode::OK, order),
            None => not_found("sales order"),
        },
        (Collection::Customers, &Method::PATCH) => patch_customer(shared, id, request),
        (Collection::SalesOrders, &Method::PATCH) => patch_sales_order(shared, id, request),
        (Collection::Customers | Collection::SalesOrders, &Method::DELETE) => delete(shared, collection, id, request),
        _ => method_not_allowed(method),
    }
}

/// Lists the lines of one sales order.
pub(super) fn list_order_lines(shared: &Shared, order_id: &str, request: &ApiRequest) -> Response {
    let state = shared.lock_state();
    let Some(order) = state.sales_orders.get(order_id) else {
        return not_found("sales order");
    };
    let body = serde_json::json!({
        "@odata.context": format!("{}/api/v2.0/$metadata#companies({})/salesOrders({})/salesOrderLines", request.base, shared.config.company_id, order.id),
        "value": order.lines.iter().map(|line| line_json(order, line)).collect::<Vec<_>>(),
    });
    super::api::json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
}

fn entity_context(shared: &Shared, request: &ApiRequest, collection: Collection) -> String {
    format!(
        "{}/api/v2.0/$metadata#companies({})/{}/$entity",
        request.base,
        shared.config.company_id,
        collection.name()
    )
}

fn customer_response(shared: &Shared, request: &ApiRequest, status: StatusCode, customer: &Customer) -> Response {
    let context = entity_context(shared, request, Collection::Customers);
    entity_response(status, &customer_json(customer, Some(&context)), &customer.etag())
}

fn order_response(shared: &Shared, request: &ApiRequest, status: StatusCode, order: &SalesOrder) -> Response {
    let context = entity_context(shared, request, Collection::SalesOrders);
    let json = sales_order_json(order, Some(&context), expands_lines(request));
    entity_response(status, &json, &order.etag())
}

fn with_location(
    mut response: Response,
    shared: &Shared,
    request: &ApiRequest,
    collection: Collection,
    id: &str,
) -> Response {
    let location = format!("{}/{}({id})", request.base, shared.collection_resource(collection));
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn duplicate_customer(number: &str) -> Response {
    odata_error(
        StatusCode::BAD_REQUEST,
        "Internal_EntityWithSameKeyExists",
        format!("The customer already exists. Identification fields and values: No.='{number}'"),
    )
}

fn create_customer(shared: &Arc<Shared>, request: &ApiRequest) -> Response {
    let mut edit = match CustomerEdit::parse(&request.body) {
        Ok(edit) => edit,
        Err(error) => return body_error(&error),
    };
    let mut state = shared.lock_state();
    let number = match edit.number.clone() {
        Some(number) if state.customer_id_by_number(&number).is_some() => return duplicate_customer(&number),
        Some(number) => number,
        // Business Central takes the next number of the customer number series.
        None => state.next_customer_number(),
    };
    edit.number = Some(number.clone());
    let now = Utc::now();
    let customer = Shared::new_customer(&mut state, &number, &edit, now);
    shared.record_change(
        &mut state,
        Collection::Customers,
        &customer.id,
        ChangeType::Created,
        now,
    );
    drop(state);

    let response = customer_response(shared, request, StatusCode::CREATED, &customer);
    with_location(response, shared, request, Collection::Customers, &customer.id)
}

fn patch_customer(shared: &Arc<Shared>, id: &str, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    let Some(mut customer) = state.customers.get(id).cloned() else {
        return not_found("customer");
    };
    if let Some(rejection) = require_if_match(&request.headers, &customer.etag()) {
        return rejection;
    }
    let edit = match CustomerEdit::parse(&request.body) {
        Ok(edit) => edit,
        Err(error) => return body_error(&error),
    };
    if let Some(number) = &edit.number {
        if state
            .customer_id_by_number(number)
            .is_some_and(|other| other != customer.id)
        {
            return duplicate_customer(number);
        }
    }
    let now = Utc::now();
    if edit.apply(&mut customer) {
        customer.version = state.next_version();
        customer.last_modified = now;
        state.customers.insert(customer.id.clone(), customer.clone());
        shared.record_change(
            &mut state,
            Collection::Customers,
            &customer.id,
            ChangeType::Updated,
            now,
        );
    }
    drop(state);
    customer_response(shared, request, StatusCode::OK, &customer)
}

/// Finds the customer a sales order body names, by `customerId` or else `customerNumber`.
fn order_customer(state: &State, write: &OrderWrite) -> Result<Option<Customer>, BodyError> {
    let id = match (&write.customer_id, &write.customer_number) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(number)) => Some(state.customer_id_by_number(number).unwrap_or_default()),
        (None, None) => None,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    match state.customers.get(&id) {
        Some(customer) => Ok(Some(customer.clone())),
        // NOTE: the error code is an assumption; Microsoft's list gives no code for an unknown
        // customer on a sales document.
        None => Err(BodyError {
            code: "BadRequest_NotFound",
            message: format!(
                "The customer '{}' does not exist.",
                write.customer_number.as_deref().unwrap_or(id.as_str())
            ),
        }),
    }
}

/// Builds the lines of a deep insert, numbered 10000, 20000, … and resolved to existing items.
/// A line without `unitPrice` takes the item's unit price, as Business Central does.
fn order_lines(state: &State, lines: &[LineWrite]) -> Result<Vec<SalesOrderLine>, BodyError> {
    let mut built = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let item = match (&line.item_id, &line.line_object_number) {
            (Some(id), _) => state.items.get(id),
            (None, Some(number)) => state.item_id_by_number(number).and_then(|id| state.items.get(&id)),
            (None, None) => {
                return Err(BodyError {
                    code: "BadRequest_RequiredParamNotProvided",
                    message: "An Item line needs 'itemId' or 'lineObjectNumber'.".to_owned(),
                })
            }
        };
        let Some(item) = item else {
            let named = line
                .item_id
                .as_deref()
                .or(line.line_object_number.as_deref())
                .unwrap_or_default();
            return Err(BodyError {
                code: "BadRequest_NotFound",
                message: format!("The item '{named}' does not exist."),
            });
        };
        let sequence = u32::try_from(index + 1).unwrap_or(u32::MAX).saturating_mul(10_000);
        built.push(SalesOrderLine {
            id: new_uuid(),
            sequence,
            item_id: item.id.clone(),
            line_object_number: item.number.clone(),
            description: line.description.clone().unwrap_or_else(|| item.display_name.clone()),
            quantity: line.quantity.unwrap_or_default(),
            unit_price: line.unit_price.unwrap_or(item.unit_price),
        });
    }
    Ok(built)
}

fn create_sales_order(shared: &Arc<Shared>, request: &ApiRequest) -> Response {
    let write = match OrderWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    let mut state = shared.lock_state();
    let customer = match order_customer(&state, &write) {
        Ok(Some(customer)) => customer,
        Ok(None) => {
            return odata_error(
                StatusCode::BAD_REQUEST,
                "BadRequest_RequiredParamNotProvided",
                "A sales order needs 'customerId' or 'customerNumber'.",
            )
        }
        Err(error) => return body_error(&error),
    };
    let lines = match order_lines(&state, write.lines.as_deref().unwrap_or_default()) {
        Ok(lines) => lines,
        Err(error) => return body_error(&error),
    };
    let now = Utc::now();
    let order = SalesOrder {
        id: new_uuid(),
        number: state.next_order_number(),
        external_document_number: write.external_document_number.unwrap_or_default(),
        order_date: write.order_date.unwrap_or_else(|| now.date_naive()),
        customer_id: customer.id.clone(),
        customer_number: customer.number.clone(),
        customer_name: customer.display_name.clone(),
        email: write.email.unwrap_or_else(|| customer.email.clone()),
        status: OrderStatus::Open,
        fully_shipped: false,
        lines,
        last_modified: now,
        version: state.next_version(),
    };
    state.sales_orders.insert(order.id.clone(), order.clone());
    shared.record_change(&mut state, Collection::SalesOrders, &order.id, ChangeType::Created, now);
    drop(state);

    let response = order_response(shared, request, StatusCode::CREATED, &order);
    with_location(response, shared, request, Collection::SalesOrders, &order.id)
}

fn patch_sales_order(shared: &Arc<Shared>, id: &str, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    let Some(mut order) = state.sales_orders.get(id).cloned() else {
        return not_found("sales order");
    };
    if let Some(rejection) = require_if_match(&request.headers, &order.etag()) {
        return rejection;
    }
    let write = match OrderWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    if write.lines.is_some() {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Lines cannot be changed through a PATCH of the sales order; use its salesOrderLines.",
        );
    }
    // NOTE: the code is an assumption; the message is the one Business Central's sales header
    // validation gives for an edit of a released document.
    if order.status == OrderStatus::Released {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "Application_FieldValidationException",
            format!("Status must be equal to 'Open' in Sales Header: Document Type=Order, No.={}. Current value is 'Released'.", order.number),
        );
    }
    let customer = match order_customer(&state, &write) {
        Ok(customer) => customer,
        Err(error) => return body_error(&error),
    };

    let before = order.clone();
    if let Some(customer) = customer {
        order.customer_id = customer.id;
        order.customer_number = customer.number;
        order.customer_name = customer.display_name;
    }
    if let Some(external) = write.external_document_number {
        order.external_document_number = external;
    }
    if let Some(date) = write.order_date {
        order.order_date = date;
    }
    if let Some(email) = write.email {
        order.email = email;
    }
    if order != before {
        let now = Utc::now();
        order.version = state.next_version();
        order.last_modified = now;
        state.sales_orders.insert(order.id.clone(), order.clone());
        shared.record_change(&mut state, Collection::SalesOrders, &order.id, ChangeType::Updated, now);
    }
    drop(state);
    order_response(shared, request, StatusCode::OK, &order)
}

fn delete(shared: &Arc<Shared>, collection: Collection, id: &str, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    let etag = match collection {
        Collection::Customers => state.customers.get(id).map(Customer::etag),
        _ => state.sales_orders.get(id).map(SalesOrder::etag),
    };
    let Some(etag) = etag else {
        return not_found(if collection == Collection::Customers {
            "customer"
        } else {
            "sales order"
        });
    };
    if let Precondition::Failed = if_match(&request.headers, &etag) {
        return entity_changed();
    }
    match collection {
        Collection::Customers => {
            state.customers.remove(id);
        }
        _ => {
            state.sales_orders.remove(id);
        }
    }
    shared.record_change(&mut state, collection, id, ChangeType::Deleted, Utc::now());
    StatusCode::NO_CONTENT.into_response()
}
