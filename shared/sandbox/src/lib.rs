//! Local HTTP stand-ins for the systems fieldsync connects, for tests, demos and development.
//!
//! Each sandbox is an axum server bound to `127.0.0.1` on an ephemeral port. It keeps its data in
//! memory, serves the subset of the platform's API that fieldsync's connectors call, and sends a
//! webhook for every change, whether an API call or a simulated person made it, signed where the
//! platform signs its webhooks.
//!
//! - [`storefront`] behaves like Shopify's Admin GraphQL API and Shopify's REST-shaped webhooks.
//! - [`erp`] is a generic REST ERP that sends fieldsync's signed-JSON webhooks.
//! - [`bigcommerce`] behaves like BigCommerce's v3 catalog, inventory adjustments and webhooks.
//! - [`erpnext`] behaves like ERPNext: Frappe's REST resource API and Frappe-signed webhooks.
//! - [`business_central`] behaves like Microsoft Dynamics 365 Business Central's API v2.0: items
//!   with entity tags, and webhook subscriptions with a validation handshake and batched
//!   notifications.
//! - [`woocommerce`] behaves like WooCommerce's REST API v3 products and its signed webhooks.
//! - [`netsuite`] behaves like a NetSuite account's REST record service for inventory items, with
//!   the account's concurrency limit and fieldsync's signed outbox deliveries.
//!
//! Tests drive a sandbox through its handle (for example [`storefront::StorefrontHandle`]), which
//! also records every webhook delivery as a [`Delivery`] with the exact body bytes. Each sandbox
//! also serves a read-only `GET /_sandbox/state` JSON view of its data, without authentication.

mod delivery;
mod documents;
mod error;
mod json_text;
mod server;

pub mod bigcommerce;
pub mod business_central;
pub mod erp;
pub mod erpnext;
pub mod netsuite;
pub mod storefront;
pub mod woocommerce;

pub use delivery::{Delivery, DeliveryOutcome, RetryPolicy};
pub use documents::{json_member, text_member, Document, DocumentKind};
pub use error::SandboxError;
