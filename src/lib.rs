//! edgeward: the HTTP front door of a multi-tenant web host, on Pingora.
//! `docs/architecture.md` is the map; in short, each module owns one concern
//! and `proxy` only delegates:
//!
//! - `config`: the file as plain validated data with positions; imports no
//!   capability
//! - `sites`: assembles the runtime configuration (sites, routing) from the
//!   capabilities' parts
//! - `live`: the live configuration behind an `ArcSwap`, reloads
//! - `proxy`: the one `ProxyHttp`, the list of phases
//! - `request`: request checks, host, client address (X-Forwarded-For)
//! - `upstream`: a site's upstream, peers, retries, failure classes
//! - `supervisor`: tenants' programs, started on demand
//! - `waf`: the Web Application Firewall (libmodsecurity + CRS)
//! - `cache`: the HTTP cache (pingora-cache, memory or Redis)
//! - `tls`: HTTPS: certificates by SNI, `https_redirect`, HSTS
//! - `limits`: timeouts and sizes of requests, connections at once
//! - `logs`: access logs and the sites log, written by one writer thread
//! - `pages`: edgeward's own responses
//! - `admin`, `metrics`: `/metrics` and `/health`
//! - `server`: process assembly and signals
//!
//! The library exists for the binary (`main.rs`, through [`cli`], with
//! [`alloc`] as its allocator) and for the benchmarks (`logs`, `alloc`).

mod admin;
pub mod alloc;
mod cache;
pub mod cli;
mod config;
mod decimal;
mod limits;
mod live;
pub mod logs;
mod metrics;
mod pages;
#[cfg(test)]
mod properties;
mod proxy;
mod request;
mod request_id;
mod server;
mod sites;
mod supervisor;
mod tls;
mod upstream;
mod waf;
