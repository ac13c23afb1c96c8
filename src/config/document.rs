//! The configuration as plain, validated data: what `parse.rs` makes of the
//! file. Global settings are checked here; each capability's section is
//! handed on as written (the types of `file.rs`) with its place in the file,
//! for the capability to validate and build (see `crate::sites`).

use super::cidr::Cidr;
use super::file::{
    AccessLogFile, CacheFile, GlobalAccessLogFile, LimitsFile, SiteCacheFile, SiteLimitsFile,
    SiteTlsFile, SiteWafFile, SupervisorFile, TlsFile, UpstreamFile, WafFile,
};
use super::report::Place;
use super::units::ConfDuration;
use std::path::PathBuf;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Default)]
pub(crate) struct Document {
    /// `IP:PORT` addresses, checked not to overlap.
    pub(crate) listen: Vec<String>,
    pub(crate) threads: usize,
    pub(crate) grace_period: Duration,
    pub(crate) admin_listen: Option<String>,
    pub(crate) trusted_proxies: Vec<Cidr>,
    /// `account/site` of an existing site.
    pub(crate) default_site: Option<String>,
    pub(crate) supervisor: Option<SupervisorFile>,
    pub(crate) cache: Option<CacheFile>,
    pub(crate) waf: Option<WafFile>,
    pub(crate) tls: Option<TlsFile>,
    pub(crate) limits: Option<LimitsFile>,
    pub(crate) access_log: Option<GlobalAccessLogFile>,
    /// Every site whose name and shape could be read, in file order.
    pub(crate) sites: Vec<SiteDoc>,
}

/// Where the global sections are.
pub(crate) const SUPERVISOR: &[&str] = &["supervisor"];
pub(crate) const CACHE: &[&str] = &["cache"];
pub(crate) const WAF: &[&str] = &["waf"];
pub(crate) const TLS: &[&str] = &["tls"];
pub(crate) const LIMITS: &[&str] = &["limits"];
pub(crate) const ACCESS_LOG: &[&str] = &["access_log"];

/// One site: `accounts.<account>.sites.<name>`.
#[derive(Debug)]
pub(crate) struct SiteDoc {
    /// `account/site`, unique.
    pub(crate) id: String,
    pub(crate) account: String,
    pub(crate) name: String,
    /// The account's log directory, absolute.
    pub(crate) log_dir: PathBuf,
    /// Host names, lower case without a trailing dot (`*.domain` for
    /// wildcards), each claimed by this site only; None when any is invalid.
    pub(crate) addresses: Option<Vec<String>>,
    /// The `upstream:` section, when there is one worth validating.
    pub(crate) upstream: Option<UpstreamFile>,
    pub(crate) waf: Option<SiteWafFile>,
    pub(crate) cache: Option<SiteCacheFile>,
    pub(crate) access_log: Option<AccessLogFile>,
    pub(crate) tls: Option<SiteTlsFile>,
    pub(crate) limits: Option<SiteLimitsFile>,
    pub(crate) https_redirect: Option<bool>,
    pub(crate) hsts: Option<ConfDuration>,
    /// The site itself (its sections are children of this place).
    pub(crate) at: Place,
}
