//! Why handshakes fail (`edgeward_tls_handshake_failures_total{reason}`).
//!
//! Every handshake that reaches the server-name callback carries a
//! [`Watch`] in its ex data. It ends in one of three ways: finished (the
//! info callback saw `SSL_CB_HANDSHAKE_DONE`), refused (edgeward refused
//! the name or certificate, or a fatal alert was sent or received: counted
//! once, under the alert's name), or dropped unfinished without an alert
//! (the client closed or timed out: `client_closed`, counted when OpenSSL
//! frees the connection).

use crate::metrics;
use log::debug;
use openssl::ex_data::Index;
use openssl::ssl::{NameType, Ssl, SslRef};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// SNI names no site, and there is no default certificate.
    UnknownName,
    /// No SNI, and there is no default certificate.
    NoServerName,
    /// OpenSSL refused the certificate or key.
    Certificate,
    /// edgeward (OpenSSL) sent a fatal alert: no common protocol version,
    /// cipher or ALPN, a malformed message...
    Sent(Alert),
    /// The client sent a fatal alert, e.g. it does not trust the
    /// certificate (`client_unknown_ca`).
    Received(Alert),
    /// The client went away mid-handshake without an alert.
    ClientClosed,
}

/// The TLS alerts a handshake ends with (RFC 8446 section 6), others are
/// `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alert {
    UnexpectedMessage,
    BadRecordMac,
    HandshakeFailure,
    BadCertificate,
    UnsupportedCertificate,
    CertificateExpired,
    CertificateUnknown,
    IllegalParameter,
    UnknownCa,
    DecodeError,
    DecryptError,
    ProtocolVersion,
    InsufficientSecurity,
    InternalError,
    InappropriateFallback,
    UserCanceled,
    MissingExtension,
    UnsupportedExtension,
    UnrecognizedName,
    NoApplicationProtocol,
    Other,
}

impl Alert {
    pub(crate) fn from_code(code: u8) -> Alert {
        match code {
            10 => Alert::UnexpectedMessage,
            20 => Alert::BadRecordMac,
            40 => Alert::HandshakeFailure,
            42 => Alert::BadCertificate,
            43 => Alert::UnsupportedCertificate,
            45 => Alert::CertificateExpired,
            46 => Alert::CertificateUnknown,
            47 => Alert::IllegalParameter,
            48 => Alert::UnknownCa,
            50 => Alert::DecodeError,
            51 => Alert::DecryptError,
            70 => Alert::ProtocolVersion,
            71 => Alert::InsufficientSecurity,
            80 => Alert::InternalError,
            86 => Alert::InappropriateFallback,
            90 => Alert::UserCanceled,
            109 => Alert::MissingExtension,
            110 => Alert::UnsupportedExtension,
            112 => Alert::UnrecognizedName,
            120 => Alert::NoApplicationProtocol,
            _ => Alert::Other,
        }
    }

    /// Every alert, for the metric's initial zeros.
    pub(crate) const ALL: [Alert; 21] = [
        Alert::UnexpectedMessage,
        Alert::BadRecordMac,
        Alert::HandshakeFailure,
        Alert::BadCertificate,
        Alert::UnsupportedCertificate,
        Alert::CertificateExpired,
        Alert::CertificateUnknown,
        Alert::IllegalParameter,
        Alert::UnknownCa,
        Alert::DecodeError,
        Alert::DecryptError,
        Alert::ProtocolVersion,
        Alert::InsufficientSecurity,
        Alert::InternalError,
        Alert::InappropriateFallback,
        Alert::UserCanceled,
        Alert::MissingExtension,
        Alert::UnsupportedExtension,
        Alert::UnrecognizedName,
        Alert::NoApplicationProtocol,
        Alert::Other,
    ];

    /// The label of an alert edgeward sent, and of one the client sent.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Alert::UnexpectedMessage => ("unexpected_message", "client_unexpected_message"),
            Alert::BadRecordMac => ("bad_record_mac", "client_bad_record_mac"),
            Alert::HandshakeFailure => ("handshake_failure", "client_handshake_failure"),
            Alert::BadCertificate => ("bad_certificate", "client_bad_certificate"),
            Alert::UnsupportedCertificate => {
                ("unsupported_certificate", "client_unsupported_certificate")
            }
            Alert::CertificateExpired => ("certificate_expired", "client_certificate_expired"),
            Alert::CertificateUnknown => ("certificate_unknown", "client_certificate_unknown"),
            Alert::IllegalParameter => ("illegal_parameter", "client_illegal_parameter"),
            Alert::UnknownCa => ("unknown_ca", "client_unknown_ca"),
            Alert::DecodeError => ("decode_error", "client_decode_error"),
            Alert::DecryptError => ("decrypt_error", "client_decrypt_error"),
            Alert::ProtocolVersion => ("protocol_version", "client_protocol_version"),
            Alert::InsufficientSecurity => {
                ("insufficient_security", "client_insufficient_security")
            }
            Alert::InternalError => ("internal_error", "client_internal_error"),
            Alert::InappropriateFallback => {
                ("inappropriate_fallback", "client_inappropriate_fallback")
            }
            Alert::UserCanceled => ("user_canceled", "client_user_canceled"),
            Alert::MissingExtension => ("missing_extension", "client_missing_extension"),
            Alert::UnsupportedExtension => {
                ("unsupported_extension", "client_unsupported_extension")
            }
            Alert::UnrecognizedName => ("unrecognized_name", "client_unrecognized_name"),
            Alert::NoApplicationProtocol => {
                ("no_application_protocol", "client_no_application_protocol")
            }
            Alert::Other => ("other_alert", "client_other_alert"),
        }
    }
}

impl Failure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownName => "unknown_name",
            Failure::NoServerName => "no_server_name",
            Failure::Certificate => "certificate",
            Failure::Sent(a) => a.labels().0,
            Failure::Received(a) => a.labels().1,
            Failure::ClientClosed => "client_closed",
        }
    }

    /// Every label, for the metric's initial zeros.
    pub(crate) fn labels() -> impl Iterator<Item = &'static str> {
        [
            "unknown_name",
            "no_server_name",
            "certificate",
            "client_closed",
        ]
        .into_iter()
        .chain(Alert::ALL.iter().flat_map(|a| {
            let (sent, received) = a.labels();
            [sent, received]
        }))
    }
}

/// A handshake in progress.
#[derive(Default)]
struct Watch {
    /// Finished, or its failure already counted.
    ended: AtomicBool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::Relaxed) {
            count(Failure::ClientClosed, None);
        }
    }
}

static WATCH: LazyLock<Option<Index<Ssl, Watch>>> = LazyLock::new(|| Ssl::new_ex_index().ok());

fn count(why: Failure, sni: Option<&str>) {
    metrics::TLS_HANDSHAKE_FAILURES
        .with_label_values(&[why.as_str()])
        .inc();
    debug!("TLS handshake failed ({}), SNI {sni:?}", why.as_str());
}

/// A handshake reached the server-name callback: watch it.
/// (The callback runs again for a second client hello after a
/// HelloRetryRequest: the first watch stays.)
pub(crate) fn start(ssl: &mut SslRef) {
    if let Some(index) = *WATCH
        && ssl.ex_data(index).is_none()
    {
        ssl.set_ex_data(index, Watch::default());
    }
}

/// Whether this is the first ending of the handshake. One refused before
/// the server-name callback (e.g. `protocol_version` for a TLS 1.0 client
/// hello) is not watched and ends only once.
fn end(ssl: &SslRef) -> bool {
    match WATCH.and_then(|index| ssl.ex_data(index)) {
        Some(w) => !w.ended.swap(true, Ordering::Relaxed),
        None => true,
    }
}

/// edgeward refused the handshake.
pub(crate) fn refused(ssl: &SslRef, why: Failure) {
    if end(ssl) {
        count(why, ssl.servername(NameType::HOST_NAME));
    }
}

pub(super) fn finished(ssl: &SslRef) {
    if let Some(w) = WATCH.and_then(|index| ssl.ex_data(index)) {
        w.ended.store(true, Ordering::Relaxed);
    }
}

pub(super) fn alert_sent(ssl: &SslRef, code: u8) {
    refused(ssl, Failure::Sent(Alert::from_code(code)));
}

pub(super) fn alert_received(ssl: &SslRef, code: u8) {
    refused(ssl, Failure::Received(Alert::from_code(code)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let all: Vec<_> = Failure::labels().collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(all.len(), unique.len());
        assert_eq!(
            Failure::Sent(Alert::from_code(70)).as_str(),
            "protocol_version"
        );
        assert_eq!(
            Failure::Received(Alert::from_code(48)).as_str(),
            "client_unknown_ca"
        );
        assert_eq!(Alert::from_code(200), Alert::Other);
    }
}
