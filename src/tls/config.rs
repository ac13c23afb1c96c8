//! TLS's part of the configuration: the global `tls:` section (HTTPS
//! listeners, default certificate) and a site's `tls:`, `https_redirect`
//! and `hsts`, validated and built (certificates are read and checked here,
//! off the request path, at every load and reload).

use super::acme::{AcmeSettings, StorageKind, StorageSettings};
use super::certs::CertKey;
use super::{Settings, SiteTls};
use crate::config::file::{AcmeFile, CertificateFile, SiteTlsFile, TlsFile, TlsStorageFile};
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
    let acme = t
        .acme
        .as_ref()
        .and_then(|a| acme(a, t.storage.as_ref(), sec));
    if t.acme.is_none() && t.storage.is_some() {
        sec.warn(
            &["storage"],
            "tls.storage: unused without tls.acme (it holds ACME accounts and certificates)",
        );
    }
    let default = t
        .default_certificate
        .as_ref()
        .and_then(|c| certificate(c, &["default_certificate"], "tls.default_certificate", sec));
    sec.done(|| Settings {
        listen: listen.iter().map(ToString::to_string).collect(),
        default,
        acme,
    })
}

/// Let's Encrypt's production directory, the default CA.
const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

fn acme(
    a: &AcmeFile,
    storage: Option<&TlsStorageFile>,
    sec: &mut Section<'_>,
) -> Option<Arc<AcmeSettings>> {
    let directory = a.directory.clone().unwrap_or_else(|| LETS_ENCRYPT.into());
    if !(directory.starts_with("https://") || directory.starts_with("http://")) {
        sec.error(
            &["acme", "directory"],
            format!("tls.acme.directory: {directory:?} is not an http(s) URL"),
        );
    }
    if let Some(e) = &a.email
        && !e.contains('@')
    {
        sec.error(
            &["acme", "email"],
            format!("tls.acme.email: {e:?} is not an e-mail address"),
        );
    }
    let ca_roots = a.ca_roots.as_ref().map(|r| absolute(Path::new(r)));
    if let Some(r) = &ca_roots {
        match std::fs::read(r) {
            Ok(pem) if openssl::x509::X509::stack_from_pem(&pem).is_ok_and(|c| !c.is_empty()) => {}
            Ok(_) => sec.error(
                &["acme", "ca_roots"],
                format!(
                    "tls.acme.ca_roots: {}: no PEM certificate in the file",
                    r.display()
                ),
            ),
            Err(e) => sec.error(
                &["acme", "ca_roots"],
                format!("tls.acme.ca_roots: cannot read {}: {e}", r.display()),
            ),
        }
    }
    let storage = storage_settings(storage, sec)?;
    sec.done(|| {
        Arc::new(AcmeSettings {
            directory,
            email: a.email.clone(),
            ca_roots,
            storage,
        })
    })
}

/// The default `tls.storage.dir`.
const STORAGE_DIR: &str = "/var/lib/edgeward/tls";

fn storage_settings(s: Option<&TlsStorageFile>, sec: &mut Section<'_>) -> Option<StorageSettings> {
    let Some(s) = s else {
        return Some(StorageSettings {
            kind: StorageKind::Dir(STORAGE_DIR.into()),
            encryption_key: None,
        });
    };
    let kind = match s.kind.as_deref().unwrap_or("dir") {
        "dir" => {
            if s.redis.is_some() {
                sec.warn(
                    &["storage", "redis"],
                    "tls.storage.redis: unused with kind: dir",
                );
            }
            StorageKind::Dir(absolute(Path::new(s.dir.as_deref().unwrap_or(STORAGE_DIR))))
        }
        "redis" => {
            let Some(r) = &s.redis else {
                sec.error_key(
                    &["storage", "kind"],
                    "tls.storage.redis: required with kind: redis (url, key_prefix)",
                );
                return None;
            };
            if let Err(e) = redis::Client::open(r.url.as_str()) {
                sec.error(
                    &["storage", "redis", "url"],
                    format!("tls.storage.redis.url: {e}"),
                );
            }
            if s.encryption_key_file.is_none() {
                sec.error_key(
                    &["storage", "kind"],
                    "tls.storage.encryption_key_file: required with kind: redis (private keys are stored encrypted)",
                );
            }
            StorageKind::Redis {
                url: r.url.clone(),
                prefix: r
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| "edgeward:tls:".into()),
            }
        }
        other => {
            sec.error(
                &["storage", "kind"],
                format!("tls.storage.kind: {other:?} is not one of dir, redis"),
            );
            return None;
        }
    };
    let encryption_key = match &s.encryption_key_file {
        Some(f) => {
            let path = absolute(Path::new(f));
            match super::acme::read_key_file(&path) {
                Ok(k) => Some(k),
                Err(e) => {
                    sec.error(
                        &["storage", "encryption_key_file"],
                        format!("tls.storage.encryption_key_file: {e}"),
                    );
                    None
                }
            }
        }
        None => None,
    };
    Some(StorageSettings {
        kind,
        encryption_key,
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
    let mut acme = false;
    if let Some(t) = tls {
        if t.acme == Some(true) {
            acme = true;
            if global.acme.is_none() {
                sec.error_key(
                    &["tls", "acme"],
                    "tls.acme: set the global tls.acme section (the CA's directory) first",
                );
            }
            if t.certificate.is_some() || t.key.is_some() {
                sec.error_key(
                    &["tls", "acme"],
                    "tls.acme: give either acme: true or a certificate and key, not both",
                );
            }
            for a in addresses.iter().filter(|a| a.starts_with("*.")) {
                sec.warn(
                    &["tls", "acme"],
                    format!("tls.acme: no certificate is ordered for the wildcard address {a}: it needs a DNS-01 challenge, which edgeward does not do (give a certificate and key in a site of its own)"),
                );
            }
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
    if https_redirect == Some(true) && cert.is_none() && !acme && global.default.is_none() {
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
        acme,
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
