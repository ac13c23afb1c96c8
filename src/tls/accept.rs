//! The handshake: the certificate is chosen per client hello from the live
//! index (swapped on reload: new handshakes get the new certificates, open
//! connections keep theirs).

use super::certs::CertKey;
use super::index::CertIndex;
use super::watch::{self, Failure};
use crate::metrics;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::debug;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext;
use pingora::tls::ssl::{NameType, SniError, SslAlert, SslRef};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// What handshakes use: the live configuration's index with the ACME
/// certificates of its ACME names added.
static CURRENT: LazyLock<ArcSwap<CertIndex>> =
    LazyLock::new(|| ArcSwap::from_pointee(CertIndex::default()));

/// The live configuration's index and expiries (ACME names without their
/// certificates).
struct Base {
    index: Arc<CertIndex>,
    expiries: Vec<(String, i64)>,
}

/// The base, and the certificates ACME has (by name): both change
/// independently (a reload; an order completes) and are composed into
/// `CURRENT`.
struct State {
    base: Base,
    acme: HashMap<String, Arc<CertKey>>,
}

/// A mutex: writes are rare and never on the handshake path.
static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        base: Base {
            index: Arc::new(CertIndex::default()),
            expiries: Vec::new(),
        },
        acme: HashMap::new(),
    })
});

/// Serve `index` (and the ACME certificates of its ACME names) to every
/// handshake from now on; `expiries` are the certificates' notAfter by
/// site, for the expiry gauge.
pub(crate) fn install<'a>(index: Arc<CertIndex>, expiries: impl Iterator<Item = (&'a str, i64)>) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    state.base = Base {
        index,
        expiries: expiries.map(|(s, t)| (s.to_string(), t)).collect(),
    };
    compose(&state);
}

/// Serve `cert` for the ACME name `name` from now on (None: forget it).
pub(crate) fn set_acme(name: &str, cert: Option<Arc<CertKey>>) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    match cert {
        Some(c) => state.acme.insert(name.to_string(), c),
        None => state.acme.remove(name),
    };
    compose(&state);
}

/// Whether handshakes for `name` get a certificate of its own.
pub(crate) fn has_certificate(name: &str) -> bool {
    CURRENT.load().has_own(name)
}

fn compose(State { base, acme }: &State) {
    let mut expiries: HashMap<&str, i64> = HashMap::new();
    for (site, t) in &base.expiries {
        expiries.insert(site, *t);
    }
    let index = if acme.is_empty() {
        base.index.clone()
    } else {
        let mut index = (*base.index).clone();
        for (name, site) in base.index.acme_names() {
            if let Some(c) = acme.get(name) {
                index.insert(name, c.clone());
                // A site's gauge is its earliest expiry.
                let e = expiries.entry(site).or_insert(c.not_after);
                *e = (*e).min(c.not_after);
            }
        }
        Arc::new(index)
    };
    CURRENT.store(index);
    metrics::TLS_CERTIFICATE_EXPIRY.reset();
    for (site, not_after) in expiries {
        metrics::TLS_CERTIFICATE_EXPIRY
            .with_label_values(&[site])
            .set(not_after);
    }
}

/// The server-name callback: a name with no certificate ends the handshake
/// with `unrecognized_name`, before any certificate is sent.
pub(crate) fn check_server_name(ssl: &mut SslRef, alert: &mut SslAlert) -> Result<(), SniError> {
    watch::start(ssl);
    let sni = ssl.servername(NameType::HOST_NAME);
    if CURRENT.load().lookup(sni).is_some() {
        return Ok(());
    }
    let why = if sni.is_some() {
        Failure::UnknownName
    } else {
        Failure::NoServerName
    };
    watch::refused(ssl, why);
    *alert = SslAlert::UNRECOGNIZED_NAME;
    Err(SniError::ALERT_FATAL)
}

/// Pingora's certificate callback.
pub(crate) struct CertSelector;

#[async_trait]
impl TlsAccept for CertSelector {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let index = CURRENT.load_full();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(cert) = index.lookup(sni.as_deref()) else {
            // A reload removed the name between the two callbacks.
            watch::refused(ssl, Failure::UnknownName);
            return;
        };
        let installed = ext::ssl_use_certificate(ssl, &cert.leaf)
            .and_then(|()| ext::ssl_use_private_key(ssl, &cert.key))
            .and_then(|()| {
                cert.chain
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = installed {
            debug!("TLS: cannot use {}: {e}", cert.certificate_file.display());
            watch::refused(ssl, Failure::Certificate);
        }
    }
}
