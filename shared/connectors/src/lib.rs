//! Outbound connectors: HTTP clients that write winning field values to each platform.
//!
//! Each client implements [`fieldsync_core::ports::SystemClient`] and maps canonical field names
//! to the platform's API:
//!
//! - [`storefront::ShopifyClient`] writes products through Shopify's Admin GraphQL API.
//! - [`erp::ErpClient`] writes items and sales orders through the ERP's REST API.
//! - [`generic::GenericClient`] writes through any REST API a connector file describes.
//!
//! They classify failures by HTTP status and error code, never by message text: throttling is
//! [`SystemError::RateLimited`](fieldsync_core::ports::SystemError::RateLimited), a lost
//! conditional write is `Conflict`, a server or network failure is `Unavailable`, and an invalid
//! write is `Rejected`.

mod http;
mod json;

pub mod erp;
pub mod generic;
pub mod storefront;

pub use fieldsync_core::Secret;
pub use http::ConnectorError;
