//! Outbound connectors: HTTP clients that write winning field values to each platform.
//!
//! Each client implements [`fieldsync_core::ports::SystemClient`] and maps canonical field names
//! to the platform's API:
//!
//! - [`storefront::ShopifyClient`] writes products through Shopify's Admin GraphQL API, and
//!   customers, quotes, orders, fulfillments and returns through the sandbox's REST-shaped API.
//! - [`erp::ErpClient`] writes items, sales orders, customers, quotes, shipments and returns
//!   through the ERP's REST API.
//! - [`business_central::BusinessCentralClient`] reads and writes Business Central items.
//! - [`bigcommerce::BigCommerceClient`] reads and writes BigCommerce catalog products.
//! - [`netsuite::NetSuiteClient`] writes NetSuite inventory items through REST web services,
//!   within the account's concurrency limit.
//! - [`generic::GenericClient`] writes through any REST API a connector file describes.
//! - [`woocommerce::WooCommerceClient`] reads and writes WooCommerce products and variations.
//!
//! They classify failures by HTTP status and error code, never by message text: throttling is
//! [`SystemError::RateLimited`](fieldsync_core::ports::SystemError::RateLimited), a lost
//! conditional write is `Conflict`, a server or network failure is `Unavailable`, and an invalid
//! write is `Rejected`.

mod documents;
mod http;
mod json;

pub mod bigcommerce;
pub mod business_central;
pub mod erp;
pub mod generic;
pub mod netsuite;
pub mod storefront;
pub mod woocommerce;

pub use fieldsync_core::Secret;
pub use http::ConnectorError;
