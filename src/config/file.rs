//! The configuration file as operators write it: serde types that mirror the
//! YAML one to one. Nothing here is validated beyond its shape; `runtime.rs`
//! turns these into the types the proxy uses.

use super::units::{ConfDuration, ConfSize};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `admin:` — the operator-only listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: String,
}

/// Global `cache:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub storage: Option<String>,
    pub memory: Option<CacheMemoryFile>,
    pub redis: Option<CacheRedisFile>,
    pub purge_allow: Option<Vec<String>>,
    /// Largest response stored (default 8MiB).
    pub max_object_size: Option<ConfSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheMemoryFile {
    pub max_size: Option<ConfSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRedisFile {
    pub url: String,
    pub key_prefix: Option<String>,
    /// Time allowed for one Redis operation (default 50ms).
    pub timeout: Option<ConfDuration>,
    /// Near cache: bytes of recently read entries kept in the process
    /// (default 64MiB, 0 = off).
    pub local_size: Option<ConfSize>,
}

/// Global `supervisor:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorFile {
    /// Ports handed to programs, `"20000-29999"`.
    pub port_range: Option<String>,
}

/// Global `waf:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafFile {
    pub crs_dir: Option<String>,
    pub profiles_dir: Option<String>,
    pub event_log: Option<String>,
    pub body_limit: Option<ConfSize>,
}

/// One account: `accounts.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    pub log_dir: String,
    #[serde(default)]
    pub sites: BTreeMap<String, serde_yaml::Value>,
}

/// One site: `accounts.<account>.sites.<name>` (read section by section).
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub addresses: Vec<String>,
    pub upstream: UpstreamFile,
    pub waf: Option<SiteWafFile>,
    pub cache: Option<SiteCacheFile>,
    pub access_log: Option<AccessLogFile>,
}

/// `upstream:` of a site: either `address` or `command` (+ its settings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub address: Option<String>,
    pub command: Option<String>,
    pub working_dir: Option<String>,
    pub environment: Option<BTreeMap<String, String>>,
    pub idle_timeout: Option<ConfDuration>,
    pub start_timeout: Option<ConfDuration>,
    /// Run the program as this user (edgeward must run as root).
    pub user: Option<String>,
    /// ... and this group (default: the user's primary group).
    pub group: Option<String>,
    /// RLIMIT_NOFILE of the program.
    pub max_open_files: Option<u64>,
    /// Time allowed to open a connection to the upstream (default 5s).
    pub connect_timeout: Option<ConfDuration>,
    /// Time allowed between two reads from the upstream (default 60s).
    pub read_timeout: Option<ConfDuration>,
    /// Time allowed between two writes to the upstream (default 60s).
    pub write_timeout: Option<ConfDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteWafFile {
    pub profile: Option<String>,
    pub exclude_rules: Option<Vec<u64>>,
    pub exclude_paths: Option<Vec<String>>,
    pub exclude_ips: Option<Vec<String>>,
    pub paranoia_level: Option<u8>,
    pub anomaly_threshold: Option<u32>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCacheFile {
    pub enabled: Option<bool>,
    pub ttl: Option<ConfDuration>,
    pub content_types: Option<Vec<String>>,
    pub store_set_cookie: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// Default true; false writes no access log for the site.
    pub enabled: Option<bool>,
    pub file: Option<String>,
    pub format: Option<String>,
}
