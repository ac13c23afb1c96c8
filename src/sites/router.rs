//! Host name → site: exact names, then `*.domain` wildcards.

use std::collections::HashMap;

/// Host name → site. Exact names win over `*.domain` wildcards; among
/// wildcards the longest (most specific) suffix wins.
#[derive(Debug, Default)]
pub(crate) struct Router {
    exact: HashMap<String, usize>,
    /// `*.example.org` is stored as `example.org`.
    wildcard: HashMap<String, usize>,
}

impl Router {
    pub(crate) fn insert_exact(&mut self, host: String, site: usize) -> Option<usize> {
        self.exact.insert(host, site)
    }

    pub(crate) fn insert_wildcard(&mut self, domain: String, site: usize) -> Option<usize> {
        self.wildcard.insert(domain, site)
    }

    pub(crate) fn route(&self, host: &str) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
