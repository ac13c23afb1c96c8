//! The handshake: the certificate is chosen per client hello from the live
//! index (swapped on reload: new handshakes get the new certificates, open
//! connections keep theirs).

use super::index::CertIndex;
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

/// Why a handshake failed (`edgeward_tls_handshake_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// SNI names no site, and there is no default certificate.
    UnknownName,
    /// No SNI, and there is no default certificate.
    NoServerName,
    /// OpenSSL refused the certificate or key.
    Certificate,
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownName => "unknown_name",
            Failure::NoServerName => "no_server_name",
            Failure::Certificate => "certificate",
        }
    }
}

fn failed(why: Failure, sni: Option<&str>) {
    metrics::TLS_HANDSHAKE_FAILURES
        .with_label_values(&[why.as_str()])
        .inc();
    debug!("TLS handshake failed ({}), SNI {sni:?}", why.as_str());
}

/// The server-name callback: a name with no certificate ends the handshake
/// with `unrecognized_name`, before any certificate is sent.
pub(crate) fn check_server_name(ssl: &mut SslRef, alert: &mut SslAlert) -> Result<(), SniError> {
    let sni = ssl.servername(NameType::HOST_NAME);
    if CURRENT.load().lookup(sni).is_some() {
        return Ok(());
    }
    failed(
        if sni.is_some() {
            Failure::UnknownName
        } else {
            Failure::NoServerName
        },
        sni,
    );
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
            failed(Failure::UnknownName, sni.as_deref());
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
            failed(Failure::Certificate, sni.as_deref());
        }
    }
}
