//! The handshake: the certificate is chosen per client hello from the live
//! index (swapped on reload: new handshakes get the new certificates, open
//! connections keep theirs).

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
use std::sync::{Arc, LazyLock};

/// The certificates of the live configuration.
static CURRENT: LazyLock<ArcSwap<CertIndex>> =
    LazyLock::new(|| ArcSwap::from_pointee(CertIndex::default()));

/// Serve `index` to every handshake from now on; `expiries` are the
/// certificates' notAfter by site, for the expiry gauge.
pub(crate) fn install<'a>(index: Arc<CertIndex>, expiries: impl Iterator<Item = (&'a str, i64)>) {
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
