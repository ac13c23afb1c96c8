//! Which certificate a handshake gets, by SNI: an exact site address, then
//! a one-label wildcard address (`*.example.org` for `a.example.org`), then
//! the default certificate. A name no site claims never gets another
//! tenant's certificate.

use super::certs::CertKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub(crate) struct CertIndex {
    exact: HashMap<String, Arc<CertKey>>,
    /// `*.example.org` is stored as `example.org`.
    wildcard: HashMap<String, Arc<CertKey>>,
    default: Option<Arc<CertKey>>,
    /// Names whose certificate is ordered by ACME, with their site's id.
    acme: HashMap<String, String>,
}

impl CertIndex {
    pub(crate) fn with_default(default: Option<Arc<CertKey>>) -> CertIndex {
        CertIndex {
            default,
            ..CertIndex::default()
        }
    }

    /// Serve `cert` for a site address (`host` or `*.domain`).
    pub(crate) fn insert(&mut self, address: &str, cert: Arc<CertKey>) {
        match address.strip_prefix("*.") {
            Some(domain) => self.wildcard.insert(domain.to_string(), cert),
            None => self.exact.insert(address.to_string(), cert),
        };
    }

    /// `name` (an exact address) gets its certificate from ACME.
    pub(crate) fn insert_acme(&mut self, name: &str, site: &str) {
        self.acme.insert(name.to_string(), site.to_string());
    }

    /// The ACME names and their sites.
    pub(crate) fn acme_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.acme.iter().map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// Whether `name` has a certificate of its own (exact, not a wildcard
    /// or the default).
    pub(crate) fn has_own(&self, name: &str) -> bool {
        self.exact.contains_key(name)
    }

    /// The certificate for a client hello with this server name (None: a
    /// client without SNI).
    pub(crate) fn lookup(&self, sni: Option<&str>) -> Option<&Arc<CertKey>> {
        let found = sni.and_then(|name| {
            let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref())
    }
}
