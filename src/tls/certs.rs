//! Certificates and keys read from PEM files, checked as `nginx -t` would
//! not: the key must match the leaf, the leaf must not be expired.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::path::{Path, PathBuf};

/// A certificate chain and its key, ready for handshakes.
pub(crate) struct CertKey {
    pub(crate) leaf: X509,
    /// Intermediates, in the order of the file.
    pub(crate) chain: Vec<X509>,
    pub(crate) key: PKey<Private>,
    /// The leaf's DNS names (subjectAltName, else the common name), lower case.
    pub(crate) names: Vec<String>,
    /// The leaf's notBefore, seconds since the Unix epoch.
    pub(crate) not_before: i64,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// Where it was read from, for messages.
    pub(crate) certificate_file: PathBuf,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("certificate_file", &self.certificate_file)
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key is not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in the file ({why})", path.display())]
    NoCertificate { path: PathBuf, why: String },
    #[error("{}: not a PEM private key ({why})", path.display())]
    BadKey { path: PathBuf, why: String },
    #[error("the key {} does not match the certificate {}", key.display(), certificate.display())]
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    #[error("the certificate {} expired on {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
}

impl CertKey {
    /// Read and check a chain (PEM, leaf first) and its key.
    pub(crate) fn load(certificate: &Path, key: &Path) -> Result<CertKey, CertError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| CertError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let pem = read(certificate)?;
        let key_pem = read(key)?;
        Self::from_pem(&pem, &key_pem, certificate, key)
    }

    /// A chain and key already read (`certificate` and `key` name where
    /// they come from, for messages).
    pub(crate) fn from_pem(
        pem: &[u8],
        key_pem: &[u8],
        certificate: &Path,
        key: &Path,
    ) -> Result<CertKey, CertError> {
        let mut certs = X509::stack_from_pem(pem).map_err(|e| CertError::NoCertificate {
            path: certificate.to_path_buf(),
            why: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(CertError::NoCertificate {
                path: certificate.to_path_buf(),
                why: "the file is empty".into(),
            });
        }
        let leaf = certs.remove(0);
        let private = PKey::private_key_from_pem(key_pem).map_err(|e| CertError::BadKey {
            path: key.to_path_buf(),
            why: e.to_string(),
        })?;
        let matches = leaf
            .public_key()
            .map(|public| public.public_eq(&private))
            .unwrap_or(false);
        if !matches {
            return Err(CertError::KeyMismatch {
                certificate: certificate.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        let not_after = unix_time(leaf.not_after());
        let not_before = unix_time(leaf.not_before());
        let now = Asn1Time::days_from_now(0)
            .map(|t| unix_time(&t))
            .unwrap_or(0);
        if not_after <= now {
            return Err(CertError::Expired {
                path: certificate.to_path_buf(),
                not_after: leaf.not_after().to_string(),
            });
        }
        let names = dns_names(&leaf);
        Ok(CertKey {
            leaf,
            chain: certs,
            key: private,
            names,
            not_before,
            not_after,
            certificate_file: certificate.to_path_buf(),
        })
    }

    /// The leaf's SHA-256 fingerprint, hex (tells certificates apart).
    pub(crate) fn fingerprint(&self) -> String {
        self.leaf
            .digest(openssl::hash::MessageDigest::sha256())
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default()
    }

    /// Whether the certificate is valid for `host` (exact, or a one-label
    /// `*.` wildcard of the certificate).
    pub(crate) fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(domain) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
            None => n == host,
        })
    }
}

/// Seconds since the Unix epoch of an ASN.1 time.
fn unix_time(t: &Asn1TimeRef) -> i64 {
    let Ok(epoch) = Asn1Time::from_unix(0) else {
        return 0;
    };
    match epoch.diff(t) {
        Ok(d) => i64::from(d.days) * 86_400 + i64::from(d.secs),
        Err(_) => 0,
    }
}

fn dns_names(leaf: &X509) -> Vec<String> {
    let mut names: Vec<String> = leaf
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
            .collect();
    }
    names
}
