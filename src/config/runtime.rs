//! The validated runtime configuration: what the proxy reads on every request.
//! Built once per load/reload by `load.rs`, then shared read-only behind an
//! `Arc` (see `crate::server::Live`).

use crate::logs::{AccessLog, SitesLog};
use crate::metrics::SiteMetrics;
use crate::net::Cidr;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from.
    pub source: PathBuf,
    pub listen: Vec<String>,
    pub threads: usize,
    pub grace_period: Duration,
    pub admin_listen: Option<String>,
    pub sites: Vec<Arc<Site>>,
    pub router: Router,
    /// Where a Host that matches no site goes (index into `sites`).
    pub default_site: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed for the client address.
    pub trusted_proxies: Vec<Cidr>,
    /// Ports the supervisor hands to programs.
    pub port_range: std::ops::RangeInclusive<u16>,
    /// Global `cache:` settings.
    pub cache: crate::cache::CacheSettings,
}

impl Config {
    /// The site that serves `host` (already normalized by [`normalize_host`]).
    pub fn site_for_host(&self, host: Option<&str>) -> Option<&Arc<Site>> {
        host.and_then(|h| self.router.route(h))
            .or(self.default_site)
            .map(|i| &self.sites[i])
    }
}

/// One hosted site.
#[derive(Debug)]
pub struct Site {
    /// `account/site`, unique; used in logs and metrics.
    pub id: String,
    pub account: String,
    pub name: String,
    pub addresses: Vec<String>,
    pub log_dir: PathBuf,
    pub upstream: Upstream,
    pub metrics: SiteMetrics,
    /// None when `access_log.enabled: false`.
    pub access_log: Option<AccessLog>,
    pub sites_log: SitesLog,
    /// The site's `cache:` section.
    pub cache: crate::cache::SiteCache,
    /// None when the profile inspects nothing (`disabled`).
    pub waf: Option<Arc<crate::waf::SiteWaf>>,
}

/// Where a site's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `host:port`, resolved when the configuration was loaded.
    Tcp { addr: SocketAddr, authority: String },
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
    /// A program edgeward starts on demand (`upstream.command`).
    Program(Arc<ProgramSpec>),
}

/// A supervised upstream program, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    pub command: String,
    pub working_dir: PathBuf,
    /// The site's own variables; IP, PORT, HOST, PATH, HOME and LANG are
    /// added by the supervisor.
    pub environment: std::collections::BTreeMap<String, String>,
    /// Zero: never stopped for idleness.
    pub idle_timeout: Duration,
    pub start_timeout: Duration,
    /// Run as this user (resolved when the configuration loads).
    pub user: Option<RunAs>,
    /// RLIMIT_NOFILE (soft and hard) for the program.
    pub max_open_files: Option<u64>,
}

/// The identity a program runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the user.
    pub groups: Vec<u32>,
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Tcp { authority, .. } => f.write_str(authority),
            UpstreamTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            UpstreamTarget::Program(p) => write!(f, "program {:?}", p.command),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

/// Host name → site. Exact names win over `*.domain` wildcards; among
/// wildcards the longest (most specific) suffix wins.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, usize>,
    /// `*.example.org` is stored as `example.org`.
    wildcard: HashMap<String, usize>,
}

impl Router {
    pub fn insert_exact(&mut self, host: String, site: usize) -> Option<usize> {
        self.exact.insert(host, site)
    }

    pub fn insert_wildcard(&mut self, domain: String, site: usize) -> Option<usize> {
        self.wildcard.insert(domain, site)
    }

    pub fn route(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Sub-domains only: `*.example.org` matches `a.example.org` and
        // `a.b.example.org`, never `example.org` itself. Walk from the
        // longest suffix to the shortest.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if rest.is_empty() {
                break;
            }
            if let Some(i) = self.wildcard.get(rest) {
                return Some(*i);
            }
        }
        None
    }
}

/// Normalize a Host header / :authority value for routing: lower case, port
/// and trailing dot removed. Returns None for an empty or malformed value.
pub fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || host.len() > 253
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        })
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalization() {
        assert_eq!(
            normalize_host("Blog.Example.ORG:8080").as_deref(),
            Some("blog.example.org")
        );
        assert_eq!(
            normalize_host("example.org.").as_deref(),
            Some("example.org")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host("evil.org:80x"), None);
    }

    #[test]
    fn routing_prefers_exact_then_longest_wildcard() {
        let mut r = Router::default();
        r.insert_exact("example.org".into(), 0);
        r.insert_wildcard("example.org".into(), 1);
        r.insert_wildcard("shop.example.org".into(), 2);
        r.insert_exact("www.shop.example.org".into(), 3);
        assert_eq!(r.route("example.org"), Some(0));
        assert_eq!(r.route("a.example.org"), Some(1));
        assert_eq!(r.route("a.b.example.org"), Some(1));
        assert_eq!(r.route("x.shop.example.org"), Some(2));
        assert_eq!(r.route("www.shop.example.org"), Some(3));
        assert_eq!(r.route("shop.example.org"), Some(1));
        assert_eq!(r.route("example.com"), None);
        assert_eq!(r.route("notexample.org"), None);
    }
}
