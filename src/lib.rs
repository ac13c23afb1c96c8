//! edgeward: the HTTP front door of a multi-tenant web host, on Pingora.
//!
//! Module map (each owns one concern; `proxy` only delegates):
//! - [`config`]: the YAML file, its validation, the runtime configuration
//! - [`live`]: the live configuration behind an `ArcSwap`, reloads
//! - [`proxy`]: the `ProxyHttp` implementation
//! - [`upstream`]: upstream peers and failure classification
//! - [`cache`]: the HTTP cache (today: PURGE is answered, never proxied)
//! - [`pages`]: edgeward's own error pages
//! - [`logs`]: access logs and the sites log, written by one writer thread
//! - [`admin`]: `/metrics` and `/health`
//! - [`supervisor`]: tenants' upstream programs, started on demand
//! - [`server`]: process assembly and signals

pub mod admin;
pub mod cache;
pub mod config;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod pages;
pub mod proxy;
pub mod request_id;
pub mod server;
pub mod supervisor;
pub mod upstream;
pub mod waf;
