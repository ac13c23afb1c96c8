//! TLS's part of the configuration: the global `tls:` section (HTTPS
//! listeners, default certificate) and a site's `tls:`, `https_redirect`
//! and `hsts`, validated and built (certificates are read and checked here,
//! off the request path, at every load and reload).

use super::certs::CertKey;
use super::{Settings, SiteTls};
use crate::config::file::{CertificateFile, SiteTlsFile, TlsFile};
use crate::config::units::ConfDuration;
use crate::config::{Section, absolute};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Validate the global `tls:` section; `plain` are the plain-HTTP and admin
/// listen addresses, which an HTTPS address must not overlap.
pub(crate) fn global(
    file: Option<&TlsFile>,
    plain: &[String],
    sec: &mut Section<'_>,
) -> Option<Settings> {
    let Some(t) = file else {
        return Some(Settings::default());
    };
    let mut listen = Vec::new();
    let taken: Vec<SocketAddr> = plain.iter().filter_map(|a| a.parse().ok()).collect();
    for (i, a) in t.listen.iter().flatten().enumerate() {
        match a.parse::<SocketAddr>() {
            Ok(sa) if taken.iter().chain(listen.iter()).any(|t| overlap(*t, sa)) => {
                sec.error_item(
                    &["listen"],
                    i,
                    format!("tls.listen: {a} overlaps another listen address"),
                );
            }
            Ok(sa) => listen.push(sa),
            Err(_) => sec.error_item(
                &["listen"],
                i,
                format!("tls.listen: {a:?} is not an IP:PORT address (e.g. \"0.0.0.0:443\")"),
            ),
        }
    }
    if t.listen.as_ref().is_none_or(|l| l.is_empty()) {
        sec.error(
            &[],
            "tls.listen: give at least one address, e.g. [\"0.0.0.0:443\"]",
        );
    }
    for key in ["acme", "storage"] {
        let given = match key {
            "acme" => t.acme.is_some(),
            _ => t.storage.is_some(),
        };
        if given {
            sec.error_key(
                &[key],
                format!("tls.{key}: automatic certificates (ACME) are not available in this version; give each site a certificate and key"),
            );
        }
    }
    let default = t
        .default_certificate
        .as_ref()
        .and_then(|c| certificate(c, &["default_certificate"], "tls.default_certificate", sec));
    sec.done(|| Settings {
        listen: listen.iter().map(ToString::to_string).collect(),
        default,
    })
}

fn certificate(
    c: &CertificateFile,
    keys: &[&str],
    name: &str,
    sec: &mut Section<'_>,
) -> Option<Arc<CertKey>> {
    load(&c.certificate, &c.key, keys, name, sec)
}

fn load(
    certificate: &str,
    key: &str,
    keys: &[&str],
    name: &str,
    sec: &mut Section<'_>,
) -> Option<Arc<CertKey>> {
    let (cert_path, key_path) = (absolute(Path::new(certificate)), absolute(Path::new(key)));
    match CertKey::load(&cert_path, &key_path) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            let mut at = keys.to_vec();
            at.push("certificate");
            sec.error(&at, format!("{name}: {e}"));
            None
        }
    }
}

/// Validate a site's `tls:`, `https_redirect` and `hsts`. `sec` is the
/// site's own place; `addresses` its host names.
pub(crate) fn site(
    addresses: &[String],
    tls: Option<&SiteTlsFile>,
    https_redirect: Option<bool>,
    hsts: Option<ConfDuration>,
    global: &Settings,
    sec: &mut Section<'_>,
) -> Option<SiteTls> {
    let mut cert = None;
    if let Some(t) = tls {
        if t.acme == Some(true) {
            sec.error_key(
                &["tls", "acme"],
                "tls.acme: automatic certificates (ACME) are not available in this version; give a certificate and key",
            );
        }
        match (&t.certificate, &t.key) {
            (Some(c), Some(k)) => {
                cert = load(c, k, &["tls"], "tls", sec);
            }
            (Some(_), None) => sec.error(&["tls"], "tls.key: required with tls.certificate"),
            (None, Some(_)) => sec.error(&["tls"], "tls.certificate: required with tls.key"),
            (None, None) if t.acme != Some(true) => {
                sec.error(&["tls"], "tls: give certificate and key");
            }
            (None, None) => {}
        }
        if global.listen.is_empty() {
            sec.error_key(
                &["tls"],
                "tls: the site has a certificate but edgeward has no HTTPS listener (set tls.listen)",
            );
        }
    }
    if let Some(c) = &cert {
        let covered: Vec<&String> = addresses
            .iter()
            .filter(|a| {
                let probe = match a.strip_prefix("*.") {
                    Some(d) => format!("x.{d}"),
                    None => a.to_string(),
                };
                c.covers(&probe)
            })
            .collect();
        if covered.is_empty() {
            sec.warn(
                &["tls", "certificate"],
                format!(
                    "tls: the certificate {} covers none of the site's addresses (it names {})",
                    c.certificate_file.display(),
                    c.names.join(", ")
                ),
            );
        }
    }
    if https_redirect == Some(true) && cert.is_none() && global.default.is_none() {
        sec.error_key(
            &["https_redirect"],
            "https_redirect: the site has no certificate (give tls.certificate and tls.key)",
        );
    }
    if let Some(h) = hsts
        && h.0.is_zero()
    {
        sec.error(&["hsts"], "hsts: must be more than 0");
    }
    sec.done(|| SiteTls {
        certificate: cert,
        https_redirect: https_redirect.unwrap_or(false),
        hsts: hsts.map(|d| d.0),
    })
}

fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.ip().is_unspecified() && a.is_ipv4() == b.is_ipv4())
            || (b.ip().is_unspecified() && a.is_ipv4() == b.is_ipv4()))
}
