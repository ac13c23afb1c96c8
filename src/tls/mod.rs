//! HTTPS: TLS termination on the `tls.listen` addresses, with the
//! certificate chosen per handshake by SNI (`index.rs`, `accept.rs`) from
//! certificates read and checked at every load (`certs.rs`, `config.rs`).
//! TLS 1.2 and 1.3 only, Mozilla's intermediate ciphers, ALPN h2 and
//! http/1.1. Per site: `https_redirect` and `hsts` (see `proxy.rs`).

mod accept;
pub(crate) mod acme;
mod certs;
pub(crate) mod config;
mod ffi;
mod index;
mod tickets;
mod watch;

pub(crate) use accept::{CertSelector, check_server_name, install};
pub(crate) use certs::CertKey;
pub(crate) use index::CertIndex;
pub(crate) use watch::Failure;

use crate::pages::Page;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// The global `tls:` settings.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// HTTPS listen addresses (none: no HTTPS).
    pub(crate) listen: Vec<String>,
    /// For names no site claims and clients without SNI.
    pub(crate) default: Option<Arc<CertKey>>,
    /// Automatic certificates (None: no `tls.acme`).
    pub(crate) acme: Option<Arc<acme::AcmeSettings>>,
}

/// A site's HTTPS settings.
#[derive(Debug, Default)]
pub(crate) struct SiteTls {
    pub(crate) certificate: Option<Arc<CertKey>>,
    /// `tls.acme: true`: certificates for the site's (non-wildcard)
    /// addresses are ordered automatically.
    pub(crate) acme: bool,
    /// Plain-HTTP requests are redirected to HTTPS.
    pub(crate) https_redirect: bool,
    /// `Strict-Transport-Security: max-age` on HTTPS responses.
    pub(crate) hsts: Option<Duration>,
}

/// The OpenSSL side of an HTTPS listener: rotating session ticket keys,
/// and the info callback that counts failed handshakes by reason.
pub(crate) fn configure(ctx: &mut openssl::ssl::SslContextBuilder) {
    tickets::install(ctx);
    ffi::set_info_callback(ctx);
}

/// The answer to a plain-HTTP request of a site with `https_redirect`:
/// 301 for GET and HEAD, 308 (method and body kept) for the others.
pub(crate) fn redirect(req: &RequestHeader, host: Option<&str>, https_port: u16) -> Page {
    let pq = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = redirect_location(host.unwrap_or(""), https_port, pq);
    let status = if matches!(req.method, http::Method::GET | http::Method::HEAD) {
        301
    } else {
        308
    };
    Page::new(status, "This site is served over HTTPS.").with("location", location)
}

/// Whether plain requests for `host` may be redirected: an ACME site waits
/// until the name has its certificate.
pub(crate) fn redirect_ready(site: &SiteTls, host: Option<&str>) -> bool {
    !site.acme || host.is_some_and(accept::has_certificate)
}

/// `Strict-Transport-Security` on an HTTPS response of a site with `hsts`.
pub(crate) fn strict_transport_security(site: &SiteTls, resp: &mut ResponseHeader) -> Result<()> {
    if let Some(max_age) = site.hsts {
        resp.insert_header(
            "strict-transport-security",
            format!("max-age={}", max_age.as_secs()),
        )?;
    }
    Ok(())
}

/// The `https://` URL a plain request is redirected to: the request's host
/// (with the HTTPS port when it is not 443) and target.
pub(crate) fn redirect_location(host: &str, https_port: u16, path_and_query: &str) -> String {
    if https_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{https_port}{path_and_query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        assert_eq!(
            redirect_location("blog.test", 443, "/a?b=1"),
            "https://blog.test/a?b=1"
        );
        assert_eq!(
            redirect_location("blog.test", 8443, "/"),
            "https://blog.test:8443/"
        );
    }
}
