//! Private keys at rest in Redis: AES-256-GCM with the key of
//! `tls.storage.encryption_key_file`, a random 96-bit nonce per value, and
//! the Redis key as associated data (a sealed value moved to another key
//! does not open). Layout: `EW1` || nonce (12) || ciphertext+tag.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::path::Path;

const MAGIC: &[u8] = b"EW1";
const NONCE_LEN: usize = 12;

/// The 32-byte storage key (never printed).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyBytes(pub(crate) [u8; 32]);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} must hold 32 bytes as 64 hex digits (e.g. made with `openssl rand -hex 32`)", path.display())]
    Format { path: std::path::PathBuf },
}

/// Read a key file: 64 hex digits (surrounding white space ignored).
pub(crate) fn read_key_file(path: &Path) -> Result<KeyBytes, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let hex = text.trim();
    let bad = || KeyFileError::Format {
        path: path.to_path_buf(),
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(KeyBytes(key))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("encryption failed")]
    Encrypt,
    #[error("a stored key does not decrypt (another tls.storage.encryption_key_file?)")]
    Decrypt,
}

pub(crate) struct SealKey(Aes256Gcm);

impl SealKey {
    pub(crate) fn new(key: [u8; 32]) -> SealKey {
        SealKey(Aes256Gcm::new(&key.into()))
    }

    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .0
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| SealError::Encrypt)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::Decrypt)?;
        if rest.len() < NONCE_LEN {
            return Err(SealError::Decrypt);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SealError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_place() {
        let k = SealKey::new([7; 32]);
        let sealed = k.seal(b"-----BEGIN PRIVATE KEY-----", b"p:cert:a").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"));
        assert_eq!(
            k.open(&sealed, b"p:cert:a").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(k.open(&sealed, b"p:cert:b").is_err());
        assert!(SealKey::new([8; 32]).open(&sealed, b"p:cert:a").is_err());
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(read_key_file(&p).unwrap().0, [0xab; 32]);
        std::fs::write(&p, "abc").unwrap();
        assert!(read_key_file(&p).is_err());
    }
}
