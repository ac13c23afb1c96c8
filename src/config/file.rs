//! The configuration file as operators write it: serde types that mirror the
//! YAML one to one. Nothing here is validated beyond its shape; `runtime.rs`
//! turns these into the types the proxy uses.

use super::units::{ConfDuration, ConfSize};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `admin:` — the operator-only listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    pub(crate) listen: String,
}

/// Global `cache:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheFile {
    pub(crate) storage: Option<String>,
    pub(crate) memory: Option<CacheMemoryFile>,
    pub(crate) redis: Option<CacheRedisFile>,
    pub(crate) purge_allow: Option<Vec<String>>,
    /// Largest response stored (default 8MiB).
    pub(crate) max_object_size: Option<ConfSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheMemoryFile {
    pub(crate) max_size: Option<ConfSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheRedisFile {
    pub(crate) url: String,
    pub(crate) key_prefix: Option<String>,
    /// Time allowed for one Redis operation (default 50ms).
    pub(crate) timeout: Option<ConfDuration>,
    /// Near cache: bytes of recently read entries kept in the process
    /// (default 64MiB, 0 = off).
    pub(crate) local_size: Option<ConfSize>,
}

/// Global `supervisor:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SupervisorFile {
    /// Ports handed to programs, `"20000-29999"`.
    pub(crate) port_range: Option<String>,
}

/// Global `waf:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WafFile {
    pub(crate) crs_dir: Option<String>,
    pub(crate) profiles_dir: Option<String>,
    pub(crate) event_log: Option<String>,
    pub(crate) body_limit: Option<ConfSize>,
}

/// One account: `accounts.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountFile {
    pub(crate) log_dir: String,
    #[serde(default)]
    pub(crate) sites: BTreeMap<String, serde_yaml::Value>,
}

/// `upstream:` of a site: either `address` or `command` (+ its settings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    pub(crate) address: Option<String>,
    pub(crate) command: Option<String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) environment: Option<BTreeMap<String, String>>,
    pub(crate) idle_timeout: Option<ConfDuration>,
    pub(crate) start_timeout: Option<ConfDuration>,
    /// Run the program as this user (edgeward must run as root).
    pub(crate) user: Option<String>,
    /// ... and this group (default: the user's primary group).
    pub(crate) group: Option<String>,
    /// RLIMIT_NOFILE of the program.
    pub(crate) max_open_files: Option<u64>,
    /// Time allowed to open a connection to the upstream (default 5s).
    pub(crate) connect_timeout: Option<ConfDuration>,
    /// Time allowed between two reads from the upstream (default 60s).
    pub(crate) read_timeout: Option<ConfDuration>,
    /// Time allowed between two writes to the upstream (default 60s).
    pub(crate) write_timeout: Option<ConfDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteWafFile {
    pub(crate) profile: Option<String>,
    pub(crate) exclude_rules: Option<Vec<u64>>,
    pub(crate) exclude_paths: Option<Vec<String>>,
    pub(crate) exclude_ips: Option<Vec<String>>,
    pub(crate) paranoia_level: Option<u8>,
    pub(crate) anomaly_threshold: Option<u32>,
    pub(crate) mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteCacheFile {
    pub(crate) enabled: Option<bool>,
    pub(crate) ttl: Option<ConfDuration>,
    pub(crate) content_types: Option<Vec<String>>,
    pub(crate) store_set_cookie: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessLogFile {
    /// Default true; false writes no access log for the site.
    pub(crate) enabled: Option<bool>,
    pub(crate) file: Option<String>,
    pub(crate) format: Option<String>,
}

/// Global `limits:` section: the defaults for every listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    pub(crate) header_timeout: Option<ConfDuration>,
    pub(crate) body_timeout: Option<ConfDuration>,
    pub(crate) keepalive_timeout: Option<ConfDuration>,
    pub(crate) max_header_size: Option<ConfSize>,
    pub(crate) max_body_size: Option<ConfSize>,
    pub(crate) max_connections: Option<u64>,
}

/// A site's `limits:` section (only what a site may set for itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteLimitsFile {
    pub(crate) max_body_size: Option<ConfSize>,
}

/// Top-level `access_log:`: the log of requests no site owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GlobalAccessLogFile {
    pub(crate) file: String,
    pub(crate) format: Option<String>,
}

/// Global `tls:` section: the HTTPS listeners and the default certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    /// `IP:PORT` addresses that speak HTTPS.
    pub(crate) listen: Option<Vec<String>>,
    pub(crate) default_certificate: Option<CertificateFile>,
    /// Automatic certificates (ACME, HTTP-01).
    pub(crate) acme: Option<AcmeFile>,
    /// Where ACME accounts, certificates, keys and challenge tokens live.
    pub(crate) storage: Option<TlsStorageFile>,
}

/// Global `tls.acme:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcmeFile {
    /// The CA's directory URL (default: Let's Encrypt's production one).
    pub(crate) directory: Option<String>,
    pub(crate) email: Option<String>,
    /// PEM file of extra roots to trust for the CA's own HTTPS.
    pub(crate) ca_roots: Option<String>,
}

/// Global `tls.storage:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsStorageFile {
    /// `dir` (default) or `redis`.
    pub(crate) kind: Option<String>,
    pub(crate) dir: Option<String>,
    pub(crate) redis: Option<TlsRedisFile>,
    pub(crate) encryption_key_file: Option<String>,
}

/// `tls.storage.redis:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsRedisFile {
    pub(crate) url: String,
    pub(crate) key_prefix: Option<String>,
}

/// A certificate chain (PEM, leaf first) and its private key (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFile {
    pub(crate) certificate: String,
    pub(crate) key: String,
}

/// A site's `tls:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteTlsFile {
    pub(crate) certificate: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) acme: Option<bool>,
}
