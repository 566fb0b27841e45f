//! A Microsoft Dynamics 365 Business Central stand-in: the API v2.0 `items`, `customers` and
//! `salesOrders` entities and webhook `subscriptions` of one company.
//!
//! The sandbox's base URL plays `https://api.businesscentral.dynamics.com/v2.0/{tenant}/{environment}`,
//! so the API is under `{base}/api/v2.0`. Facts about Business Central below come from Microsoft's
//! API v2.0 reference ("Working with webhooks", the `items`, `customer`, `salesOrder`,
//! `salesOrderLine` and `subscriptions` pages, "Error codes"), the "Operational limits for
//! Business Central online" page, the "Work with API limits" training module, Arend-Jan
//! Kauffmann's article "Deep insert with Business Central APIs" (2020), and the Sales Document
//! Status enum of the base application, as published in 2020-2026.
//!
//! # Covered
//!
//! - Bearer authentication on every `/api/v2.0` route: HTTP 401 with the OData error code
//!   `Authentication_InvalidCredentials` otherwise. Errors are `{"error":{"code","message"}}`.
//! - `GET /api/v2.0/companies` and `companies({id})` with the one configured company.
//! - Items under `companies({companyId})/items`: `id` (GUID), `number`, `displayName`,
//!   `displayName2` (50 characters), `unitPrice`, `inventory` (read-only), `lastModifiedDateTime` (UTC, milliseconds) and a weak
//!   `@odata.etag` that changes with every modification. Money and inventory are JSON numbers
//!   read and written with their exact digits, never through `f64`.
//!   - `GET items({id})` returns 200 or 404. `GET items` takes a `$filter` of `eq`, `ne`, `gt`,
//!     `ge`, `lt` and `le` comparisons on `id`, `number`, `displayName`, `unitPrice`,
//!     `inventory` and `lastModifiedDateTime`, joined by `and`. Paging is server-driven: a page
//!     has at most [`BusinessCentralConfig::page_size`] items ordered by `number`, and an
//!     absolute `@odata.nextLink` with `$skiptoken` while more remain.
//!   - `POST items` (201; `number` required and unique, 400 otherwise).
//!   - `PATCH items({id})` requires `If-Match`: a missing header gets 400
//!     `BadRequest_InvalidToken`, as Business Central does; a stale tag gets 412
//!     `Request_EntityChanged`; `*` matches. Unknown members get 400 `BadRequest`, read-only
//!     ones (`id`, `inventory`, `lastModifiedDateTime`) 400 `BadRequest_InvalidOperation`, and
//!     money given as a string 400 `BadRequest`.
//!   - `DELETE items({id})` (204), with `If-Match` checked when given.
//! - Customers under `companies({companyId})/customers`: `id`, `number` (upper case, unique;
//!   `C00001` onwards from the sandbox's number series when a POST leaves it out), `displayName`,
//!   `type` (always `Person`), `addressLine1`, `addressLine2`, `city`, `state`, `country`,
//!   `postalCode`, `phoneNumber`, `email`, `lastModifiedDateTime` and `@odata.etag`. `GET` (list
//!   and by id), `POST` (201, 400 `Internal_EntityWithSameKeyExists` on a duplicate number),
//!   `PATCH` and `DELETE` follow the item rules for `If-Match`, read-only and unknown members.
//!   `$filter` takes `id`, `number`, `displayName`, `email`, `phoneNumber` and
//!   `lastModifiedDateTime`.
//! - Sales orders under `companies({companyId})/salesOrders` have these members: `id`, `number`
//!   (`S-ORD101001` onwards, read-only), `externalDocumentNumber` (35 characters, not unique, as
//!   in Business Central), `orderDate`, `customerId`, `customerNumber`, `customerName`, `email`,
//!   `status`, `fullyShipped`, `totalAmountIncludingTax`, `lastModifiedDateTime` and
//!   `@odata.etag`. The read-only `status` is `Draft`, `In Review`, `Open` or `Released`, and new
//!   orders are `Open`. `totalAmountIncludingTax` is the sum of quantity times unit price,
//!   because the sandbox computes no tax.
//!   - `$expand=salesOrderLines` on `GET salesOrders` and `GET salesOrders({id})` adds the lines;
//!     `GET salesOrders({id})/salesOrderLines` lists them. Lines show `id`, `documentId`,
//!     `sequence` (10000, 20000, …), `itemId`, `lineType` (`Item`), `lineObjectNumber` (the item
//!     number), `description`, `quantity` and `unitPrice`, numbers with their exact digits.
//!   - `POST salesOrders` needs `customerId` or `customerNumber` of an existing customer and takes
//!     the lines in the same request as a `salesOrderLines` array (deep insert). A line names its
//!     item by `itemId` or `lineObjectNumber`; without `unitPrice` it takes the item's unit price
//!     and without `description` the item's display name. An unknown customer or item gets 400
//!     and nothing is created.
//!   - `PATCH salesOrders({id})` changes header members with `If-Match` as for items; lines in a
//!     PATCH body get 400, and a `Released` order rejects every change with 400.
//!   - `$filter` takes `id`, `number`, `externalDocumentNumber`, `customerNumber`, `email`,
//!     `status` and `lastModifiedDateTime`.
//! - Subscriptions under `/api/v2.0/subscriptions`: `POST`, `GET` (list and
//!   `subscriptions('{id}')`), `PATCH` (renewal, `If-Match` required like items) and `DELETE`.
//!   `POST` and `PATCH` first run the handshake: a `POST` to
//!   `notificationUrl?validationToken=<token>` with an empty body that must return 200 with
//!   exactly the token as its body within [`BusinessCentralConfig::handshake_timeout`];
//!   otherwise the request gets 400 and nothing changes. A subscription lives
//!   [`BusinessCentralConfig::subscription_lifetime`] (three days in Business Central) from its
//!   creation or last renewal; once expired it is gone (404) and gets no notifications.
//!   The `items`, `customers` and `salesOrders` collections of the configured company can be
//!   subscribed to, one collection per subscription.
//! - Notifications for every change of an item, customer or sales order, through the API
//!   (fieldsync's own writes included) or a handle method that plays a person, to the
//!   subscriptions of that collection. Changes are collected per subscription for
//!   [`BusinessCentralConfig::notification_delay`] after the first one (30 s in Business Central),
//!   merged per entity, and posted as `{"value":[…]}` entries with `changeType` `created`,
//!   `updated` or `deleted` and the entity's resource. A batch of more than
//!   [`BusinessCentralConfig::collection_threshold`] entities (1,000 in Business Central) is sent
//!   as one `collection` entry whose resource is the collection with a
//!   `$filter=lastModifiedDateTime gt …` that selects the changed entities. Connection errors,
//!   timeouts, 408, 429 and 5xx are retried with backoff; any other status deletes the
//!   subscription without retrying, as Business Central does.
//! - A request token bucket (by default 6,000 requests per 5 minutes, Business Central's limit per
//!   user) and a cap on simultaneous requests (100, Business Central's "max connections"). Both
//!   are enforced with HTTP 429, `Retry-After` in seconds and an OData error. Forced 429s serve
//!   tests.
//!
//! # Not covered
//!
//! - Other entities (vendors, sales quotes, invoices, shipments), `$select`, `$top`, `$skip`,
//!   `$orderby`, `$batch`, `$expand` of anything but `salesOrderLines`, `or`/`not` and functions
//!   in `$filter`, and `If-None-Match`.
//! - Item properties other than the six above (type, blocked, GTIN, unit cost, tax and posting
//!   groups, units of measure).
//! - Customer properties other than those above (blocked, credit limit, tax and posting groups,
//!   currency, payment terms) and the check Business Central makes on the email format.
//! - Sales order lines other than `Item` lines, line `POST`, `PATCH` and `DELETE`, discounts,
//!   taxes, currencies, shipping and billing addresses, and the `shipAndInvoice` and release
//!   actions: a person releases or ships an order through the handle.
//! - Business Central's number series settings: customer numbers given in a POST are always
//!   accepted, as with a series that allows manual numbers.
//! - Several subscriptions sharing one notification URL get one POST each; Business Central may
//!   put their entries into one POST.
//! - Business Central's 36-hour retry schedule: retries follow [`RetryPolicy`].
//! - Business Central processes 5 OData requests at a time and queues up to 95 more before it
//!   rejects one with 429. The sandbox processes up to 100 at a time and rejects the next.
//! - A token bucket only approximates Business Central's 5-minute sliding window.

mod api;
mod documents;
mod filter;
mod model;
mod notify;
mod sales;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::runtime::Handle;

pub use documents::{Customer, CustomerEdit, OrderStatus, SalesOrder, SalesOrderLine};
pub use model::{Item, ItemEdit, Subscription};

pub use crate::erp::RateLimitConfig;

use crate::delivery::{new_uuid, Delivery, Dispatcher, RetryPolicy, RetryRule};
use crate::erp::throttle::TokenBucket;
use crate::error::SandboxError;
use crate::server::RunningServer;
use notify::{ChangeType, Collection, Slot};

/// The company id of a sandbox started with the default configuration.
pub const DEFAULT_COMPANY_ID: &str = "11111111-2222-3333-4444-555555555555";

/// Settings of a Business Central sandbox. The token is redacted from `Debug` output.
#[derive(Clone)]
pub struct BusinessCentralConfig {
    /// The bearer token every API request must carry.
    pub api_token: String,
    /// The id of the sandbox's one company.
    pub company_id: String,
    pub company_name: String,
    /// Items per page of a collection response.
    pub page_size: usize,
    pub rate_limit: RateLimitConfig,
    /// Requests processed at once; one more gets HTTP 429.
    pub max_concurrent_requests: usize,
    /// Time allowed for the notification URL to respond to the validation handshake.
    pub handshake_timeout: Duration,
    /// How long a subscription lives after its creation or last renewal.
    pub subscription_lifetime: Duration,
    /// How long changes are collected after the first one before they are sent.
    pub notification_delay: Duration,
    /// The most changed items one notification lists; a batch with more becomes one
    /// `collection` entry.
    pub collection_threshold: usize,
    /// Retries of notification deliveries.
    pub retry: RetryPolicy,
}

impl Default for BusinessCentralConfig {
    fn default() -> Self {
        Self {
            api_token: "bc-sandbox-fake-token".to_owned(),
            company_id: DEFAULT_COMPANY_ID.to_owned(),
            company_name: "CRONUS Sandbox".to_owned(),
            page_size: 20,
            // 6,000 requests in a 5-minute window is 20 requests per second on average.
            rate_limit: RateLimitConfig {
                burst_requests: 6000,
                refill_requests_per_sec: 20.0,
            },
            max_concurrent_requests: 100,
            handshake_timeout: Duration::from_secs(5),
            subscription_lifetime: Duration::from_secs(3 * 24 * 60 * 60),
            notification_delay: Duration::ZERO,
            collection_threshold: 1000,
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for BusinessCentralConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusinessCentralConfig")
            .field("api_token", &"<redacted>")
            .field("company_id", &self.company_id)
            .field("company_name", &self.company_name)
            .field("page_size", &self.page_size)
            .field("rate_limit", &self.rate_limit)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("subscription_lifetime", &self.subscription_lifetime)
            .field("notification_delay", &self.notification_delay)
            .field("collection_threshold", &self.collection_threshold)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Starts Business Central sandboxes.
#[derive(Debug)]
pub struct BusinessCentralSandbox;

impl BusinessCentralSandbox {
    /// Starts a Business Central sandbox on `127.0.0.1` with an ephemeral port. Must run inside a
    /// Tokio runtime.
    pub async fn start(config: BusinessCentralConfig) -> Result<BusinessCentralHandle, SandboxError> {
        let runtime = Handle::try_current().map_err(|_| SandboxError::NoRuntime)?;
        let dispatcher = Dispatcher::with_rule(
            "business_central",
            None,
            config.retry.clone(),
            Box::new(notify::JsonHeaders),
            RetryRule::TransientOnly,
        )?;
        // A redirect is not the 200 the handshake requires, so it is not followed.
        let handshake_client = reqwest::Client::builder()
            .timeout(config.handshake_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| SandboxError::HttpClient { source })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            bucket: Mutex::new(TokenBucket::new(config.rate_limit)),
            forced_429: Mutex::new(Forced429::default()),
            in_flight: AtomicUsize::new(0),
            api_requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            dispatcher,
            handshake_client,
            runtime,
            config,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "business_central").await?;
        Ok(BusinessCentralHandle { shared, server })
    }
}

/// The number of upcoming requests to reject with HTTP 429, for tests.
#[derive(Debug, Default)]
struct Forced429 {
    remaining: u32,
    retry_after_secs: u64,
}

impl Forced429 {
    fn take(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.retry_after_secs)
    }
}

/// The sandbox's data: items, customers and sales orders by id, subscriptions by id with their
/// unsent changes, the counter behind every entity tag and the number series.
#[derive(Debug, Default)]
struct State {
    items: BTreeMap<String, Item>,
    customers: BTreeMap<String, Customer>,
    sales_orders: BTreeMap<String, SalesOrder>,
    subscriptions: BTreeMap<String, Slot>,
    last_version: u64,
    last_customer_number: u64,
    last_order_number: u64,
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }

    /// Finds an item by number. Business Central stores `Code` fields such as the number in upper
    /// case, so `number` is compared in upper case.
    fn item_id_by_number(&self, number: &str) -> Option<String> {
        let number = number.to_uppercase();
        self.items
            .values()
            .find(|item| item.number == number)
            .map(|item| item.id.clone())
    }

    /// Finds a customer by number, compared in upper case like item numbers.
    fn customer_id_by_number(&self, number: &str) -> Option<String> {
        let number = number.to_uppercase();
        self.customers
            .values()
            .find(|customer| customer.number == number)
            .map(|customer| customer.id.clone())
    }

    /// Finds a sales order by its order number, compared in upper case.
    fn sales_order_id_by_number(&self, number: &str) -> Option<String> {
        let number = number.to_uppercase();
        self.sales_orders
            .values()
            .find(|order| order.number == number)
            .map(|order| order.id.clone())
    }

    /// Returns the next unused customer number of the sandbox's series, `C00001` onwards.
    fn next_customer_number(&mut self) -> String {
        loop {
            self.last_customer_number += 1;
            let number = format!("C{:05}", self.last_customer_number);
            if self.customer_id_by_number(&number).is_none() {
                return number;
            }
        }
    }

    /// Returns the next sales order number of the sandbox's series, `S-ORD101001` onwards.
    fn next_order_number(&mut self) -> String {
        self.last_order_number += 1;
        format!("S-ORD{}", 101_000 + self.last_order_number)
    }

    /// Removes subscriptions whose expiration time has passed.
    fn drop_expired(&mut self, now: DateTime<Utc>) {
        self.subscriptions.retain(|id, slot| {
            let live = slot.subscription.expiration > now;
            if !live {
                tracing::info!(sandbox = "business_central", subscription_id = %id, "subscription expired");
            }
            live
        });
    }
}

/// State shared by the HTTP handlers, the notification tasks and the handle.
struct Shared {
    state: Mutex<State>,
    bucket: Mutex<TokenBucket>,
    forced_429: Mutex<Forced429>,
    in_flight: AtomicUsize,
    api_requests: AtomicU64,
    throttled: AtomicU64,
    dispatcher: Arc<Dispatcher>,
    handshake_client: reqwest::Client,
    runtime: Handle,
    config: BusinessCentralConfig,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a handler panicked; the data is still usable for a sandbox.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the items collection path without a leading slash, as notifications write it.
    fn items_resource(&self) -> String {
        self.collection_resource(Collection::Items)
    }

    /// Returns a collection's path without a leading slash, as notifications write it.
    fn collection_resource(&self, collection: Collection) -> String {
        format!("api/v2.0/companies({})/{}", self.config.company_id, collection.name())
    }

    /// Creates a customer with a new GUID and version from `edit`, stores it and returns it.
    fn new_customer(state: &mut State, number: &str, edit: &CustomerEdit, now: DateTime<Utc>) -> Customer {
        let mut customer = Customer {
            id: new_uuid(),
            number: number.to_uppercase(),
            last_modified: now,
            version: state.next_version(),
            ..Customer::default()
        };
        edit.apply(&mut customer);
        customer.number = number.to_uppercase();
        state.customers.insert(customer.id.clone(), customer.clone());
        customer
    }

    /// Creates an item with a new GUID and version.
    fn new_item(state: &mut State, number: &str, now: DateTime<Utc>) -> Item {
        Item {
            id: new_uuid(),
            number: number.to_uppercase(),
            display_name: String::new(),
            display_name_2: String::new(),
            unit_price: Decimal::ZERO,
            inventory: Decimal::ZERO,
            last_modified: now,
            version: state.next_version(),
        }
    }
}

/// A running Business Central sandbox. Dropping it stops the server without waiting;
/// [`BusinessCentralHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct BusinessCentralHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl BusinessCentralHandle {
    /// Returns `http://127.0.0.1:<port>`, which plays
    /// `https://api.businesscentral.dynamics.com/v2.0/{tenant}/{environment}`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Returns `<base_url>/api/v2.0`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v2.0", self.base_url())
    }

    /// Returns the id of the sandbox's company.
    pub fn company_id(&self) -> &str {
        &self.shared.config.company_id
    }

    /// Returns the path to subscribe to for item changes: `/api/v2.0/companies(<id>)/items`.
    pub fn items_resource(&self) -> String {
        format!("/{}", self.shared.items_resource())
    }

    /// Rejects the next `requests` API requests with HTTP 429 and `Retry-After`.
    pub fn force_http_429(&self, requests: u32, retry_after_secs: u64) {
        if let Ok(mut forced) = self.shared.forced_429.lock() {
            *forced = Forced429 {
                remaining: requests,
                retry_after_secs,
            };
        }
    }

    /// Creates or edits the item `number` as a person in Business Central would, and notifies
    /// `created` or, if a value changed, `updated`.
    pub fn upsert_item_as_user(&self, number: &str, edit: ItemEdit) -> Item {
        let mut state = self.shared.lock_state();
        let now = Utc::now();
        let existing = state
            .item_id_by_number(number)
            .and_then(|id| state.items.get(&id).cloned());
        if let Some(mut item) = existing {
            if edit.apply(&mut item) {
                item.version = state.next_version();
                item.last_modified = now;
                state.items.insert(item.id.clone(), item.clone());
                self.shared
                    .record_change(&mut state, Collection::Items, &item.id, ChangeType::Updated, now);
            }
            return item;
        }
        let mut item = Shared::new_item(&mut state, number, now);
        edit.apply(&mut item);
        state.items.insert(item.id.clone(), item.clone());
        self.shared
            .record_change(&mut state, Collection::Items, &item.id, ChangeType::Created, now);
        item
    }

    /// Sets the unit price of `number` as a person in Business Central would.
    pub fn set_price_as_user(&self, number: &str, unit_price: Decimal) -> Result<Item, SandboxError> {
        self.edit_existing(
            number,
            ItemEdit {
                unit_price: Some(unit_price),
                ..ItemEdit::default()
            },
        )
    }

    /// Sets the inventory of `number` as the warehouse does by posting an adjustment; the API
    /// cannot change it.
    pub fn set_inventory_as_user(&self, number: &str, inventory: Decimal) -> Result<Item, SandboxError> {
        self.edit_existing(
            number,
            ItemEdit {
                inventory: Some(inventory),
                ..ItemEdit::default()
            },
        )
    }

    fn edit_existing(&self, number: &str, edit: ItemEdit) -> Result<Item, SandboxError> {
        if self.shared.lock_state().item_id_by_number(number).is_none() {
            return Err(SandboxError::NotFound {
                kind: "item",
                id: number.to_owned(),
            });
        }
        Ok(self.upsert_item_as_user(number, edit))
    }

    /// Deletes the item `number` as a person in Business Central would, and notifies `deleted`.
    pub fn delete_item_as_user(&self, number: &str) -> Result<Item, SandboxError> {
        let mut state = self.shared.lock_state();
        let removed = state
            .item_id_by_number(number)
            .and_then(|id| state.items.remove(&id))
            .ok_or_else(|| SandboxError::NotFound {
                kind: "item",
                id: number.to_owned(),
            })?;
        self.shared.record_change(
            &mut state,
            Collection::Items,
            &removed.id,
            ChangeType::Deleted,
            Utc::now(),
        );
        Ok(removed)
    }

    /// Returns a snapshot of the item `number`.
    pub fn item(&self, number: &str) -> Option<Item> {
        let state = self.shared.lock_state();
        let id = state.item_id_by_number(number)?;
        state.items.get(&id).cloned()
    }

    /// Returns a snapshot of every item, by number.
    pub fn items(&self) -> Vec<Item> {
        let mut items: Vec<Item> = self.shared.lock_state().items.values().cloned().collect();
        items.sort_by(|left, right| left.number.cmp(&right.number));
        items
    }

    /// Returns the path to subscribe to for customer changes: `/api/v2.0/companies(<id>)/customers`.
    pub fn customers_resource(&self) -> String {
        format!("/{}", self.shared.collection_resource(Collection::Customers))
    }

    /// Returns the path to subscribe to for sales order changes:
    /// `/api/v2.0/companies(<id>)/salesOrders`.
    pub fn sales_orders_resource(&self) -> String {
        format!("/{}", self.shared.collection_resource(Collection::SalesOrders))
    }

    /// Creates or edits the customer `number` as a person in Business Central would, and notifies
    /// `created` or, if a value changed, `updated`. A number in `edit` is ignored.
    pub fn upsert_customer_as_user(&self, number: &str, edit: CustomerEdit) -> Customer {
        let edit = CustomerEdit { number: None, ..edit };
        let mut state = self.shared.lock_state();
        let now = Utc::now();
        let existing = state
            .customer_id_by_number(number)
            .and_then(|id| state.customers.get(&id).cloned());
        if let Some(mut customer) = existing {
            if edit.apply(&mut customer) {
                customer.version = state.next_version();
                customer.last_modified = now;
                state.customers.insert(customer.id.clone(), customer.clone());
                self.shared.record_change(
                    &mut state,
                    Collection::Customers,
                    &customer.id,
                    ChangeType::Updated,
                    now,
                );
            }
            return customer;
        }
        let customer = Shared::new_customer(&mut state, number, &edit, now);
        self.shared.record_change(
            &mut state,
            Collection::Customers,
            &customer.id,
            ChangeType::Created,
            now,
        );
        customer
    }

    /// Returns a snapshot of the customer `number`.
    pub fn customer(&self, number: &str) -> Option<Customer> {
        let state = self.shared.lock_state();
        let id = state.customer_id_by_number(number)?;
        state.customers.get(&id).cloned()
    }

    /// Returns a snapshot of every customer, by number.
    pub fn customers(&self) -> Vec<Customer> {
        let mut customers: Vec<Customer> = self.shared.lock_state().customers.values().cloned().collect();
        customers.sort_by(|left, right| left.number.cmp(&right.number));
        customers
    }

    /// Sets the status of the sales order `number` (such as `S-ORD101001`) as a person in
    /// Business Central would, and notifies `updated` if it changed.
    pub fn set_order_status_as_user(&self, number: &str, status: OrderStatus) -> Result<SalesOrder, SandboxError> {
        self.edit_order_as_user(number, |order| order.status = status)
    }

    /// Releases the sales order `number` for warehouse handling, as the Release action does.
    pub fn release_order_as_user(&self, number: &str) -> Result<SalesOrder, SandboxError> {
        self.set_order_status_as_user(number, OrderStatus::Released)
    }

    /// Ships every line of the sales order `number`, as posting its shipment does: the order is
    /// released and `fullyShipped` becomes true.
    pub fn ship_order_as_user(&self, number: &str) -> Result<SalesOrder, SandboxError> {
        self.edit_order_as_user(number, |order| {
            order.status = OrderStatus::Released;
            order.fully_shipped = true;
        })
    }

    fn edit_order_as_user(&self, number: &str, edit: impl FnOnce(&mut SalesOrder)) -> Result<SalesOrder, SandboxError> {
        let mut state = self.shared.lock_state();
        let mut order = state
            .sales_order_id_by_number(number)
            .and_then(|id| state.sales_orders.get(&id).cloned())
            .ok_or_else(|| SandboxError::NotFound {
                kind: "sales order",
                id: number.to_owned(),
            })?;
        let before = order.clone();
        edit(&mut order);
        if order != before {
            let now = Utc::now();
            order.version = state.next_version();
            order.last_modified = now;
            state.sales_orders.insert(order.id.clone(), order.clone());
            self.shared
                .record_change(&mut state, Collection::SalesOrders, &order.id, ChangeType::Updated, now);
        }
        Ok(order)
    }

    /// Returns a snapshot of the sales order `number`.
    pub fn sales_order(&self, number: &str) -> Option<SalesOrder> {
        let state = self.shared.lock_state();
        let id = state.sales_order_id_by_number(number)?;
        state.sales_orders.get(&id).cloned()
    }

    /// Returns a snapshot of the first sales order, by number, whose `externalDocumentNumber` is
    /// `external`.
    pub fn sales_order_by_external(&self, external: &str) -> Option<SalesOrder> {
        self.sales_orders()
            .into_iter()
            .find(|order| order.external_document_number == external)
    }

    /// Returns a snapshot of every sales order, by number.
    pub fn sales_orders(&self) -> Vec<SalesOrder> {
        let mut orders: Vec<SalesOrder> = self.shared.lock_state().sales_orders.values().cloned().collect();
        orders.sort_by(|left, right| left.number.cmp(&right.number));
        orders
    }

    /// Returns a snapshot of every live subscription, by id.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut state = self.shared.lock_state();
        state.drop_expired(Utc::now());
        state
            .subscriptions
            .values()
            .map(|slot| slot.subscription.clone())
            .collect()
    }

    /// Returns a snapshot of the subscription `subscription_id` if it is live.
    pub fn subscription(&self, subscription_id: &str) -> Option<Subscription> {
        let mut state = self.shared.lock_state();
        state.drop_expired(Utc::now());
        state
            .subscriptions
            .get(subscription_id)
            .map(|slot| slot.subscription.clone())
    }

    /// Lets the subscription expire now, as if its lifetime had passed without a renewal. Its
    /// unsent changes are dropped.
    pub fn expire_subscription(&self, subscription_id: &str) -> Result<(), SandboxError> {
        let mut state = self.shared.lock_state();
        let now = Utc::now();
        state.drop_expired(now);
        let slot = state
            .subscriptions
            .get_mut(subscription_id)
            .ok_or_else(|| SandboxError::NotFound {
                kind: "subscription",
                id: subscription_id.to_owned(),
            })?;
        slot.subscription.expiration = now;
        state.drop_expired(now);
        Ok(())
    }

    /// Deletes the subscription as an administrator would in Business Central.
    pub fn delete_subscription(&self, subscription_id: &str) -> Result<Subscription, SandboxError> {
        self.shared
            .lock_state()
            .subscriptions
            .remove(subscription_id)
            .map(|slot| slot.subscription)
            .ok_or_else(|| SandboxError::NotFound {
                kind: "subscription",
                id: subscription_id.to_owned(),
            })
    }

    /// Returns how many requests reached an `/api/v2.0` route, rejected ones included.
    pub fn api_request_count(&self) -> u64 {
        self.shared.api_requests.load(Ordering::SeqCst)
    }

    /// Returns how many requests got HTTP 429.
    pub fn throttled_count(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// Returns every notification delivery attempt so far, oldest first. Handshakes are not
    /// included.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.dispatcher.deliveries()
    }

    /// Waits until no notification is collecting changes, waiting for delivery or retrying.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Stops the server and waits for open requests to finish. Pending notifications still run.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}
