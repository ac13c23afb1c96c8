//! The HTTP cache, on pingora-cache. `proxy.rs` calls one hook per phase
//! (`hooks`); the decisions of RFC 9111 live in `policy`, keys in `key`,
//! PURGE in `purge`, the storage trait and the process's storage in
//! `store` (implemented by `memory` and `redis`, with its `near` cache),
//! and the section of the configuration in `config` → `settings`.
//!
//! - Keys: the site id (length-prefixed) and the request URL (host + path +
//!   query), so two sites never share an entry; `Vary` variants are
//!   separate entries under the same URL.
//! - PURGE is answered here, from `cache.purge_allow` only (socket address,
//!   never a header), and never reaches an upstream.
//! - Responses of a cache-enabled site carry `Cache-Status` (RFC 9211) and,
//!   when served from the cache, `Age`.

pub(crate) mod config;
mod hooks;
mod key;
mod lru;
mod memory;
mod near;
mod policy;
mod purge;
mod redis;
mod settings;
mod store;

pub(crate) use hooks::{
    CacheCtx, cache_key, hit_filter, proxy_upstream_filter, request_cache_filter,
    response_cache_filter, response_filter, serve_fresh_hit, should_serve_stale,
    upstream_response_filter, vary_filter,
};
pub(crate) use purge::{is_purge, purge};
pub(crate) use settings::{CacheSettings, SiteCache};
#[cfg(test)]
pub(crate) use {
    policy::{Directive, directives},
    purge::UrlMatch,
};
