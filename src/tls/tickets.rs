//! Session resumption with rotating ticket keys.
//!
//! OpenSSL encrypts session tickets with keys made once per context and
//! never changed, so a long-running server would let one leaked key decrypt
//! every resumed session since it started. Here a new key is made every
//! [`ROTATE`]; tickets are issued under the newest key and accepted under
//! the [`KEPT`] newest (a ticket under an older key is renewed, one under a
//! key no longer kept means a full handshake). OpenSSL's default ticket
//! lifetime (2 h) is below `KEPT x ROTATE`, so no valid ticket is refused.
//! Keys live in this process only: an instance resumes the sessions it
//! issued.

use super::ffi;
use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a key issues tickets.
pub(crate) const ROTATE: Duration = Duration::from_secs(3600);
/// How many keys decrypt tickets (the newest first).
pub(crate) const KEPT: usize = 3;

/// One ticket key: its name (sent in the ticket), the AES-256-CBC key and
/// the HMAC-SHA256 key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) name: [u8; 16],
    pub(crate) aes: [u8; 32],
    pub(crate) hmac: [u8; 32],
    born: Instant,
}

impl Key {
    fn new(born: Instant) -> Option<Key> {
        let mut bytes = [0u8; 80];
        openssl::rand::rand_bytes(&mut bytes).ok()?;
        let mut key = Key {
            name: [0; 16],
            aes: [0; 32],
            hmac: [0; 32],
            born,
        };
        key.name.copy_from_slice(&bytes[..16]);
        key.aes.copy_from_slice(&bytes[16..48]);
        key.hmac.copy_from_slice(&bytes[48..]);
        Some(key)
    }
}

/// The keys, newest first.
#[derive(Default)]
pub(crate) struct Ring {
    keys: VecDeque<Key>,
}

/// What decrypting a ticket found.
pub(crate) enum Found {
    /// Under the newest key.
    Current(Key),
    /// Under an older key still kept: accept, and issue a new ticket.
    Renew(Key),
}

impl Ring {
    /// The key that encrypts a new ticket at `now` (a new one when the
    /// newest is [`ROTATE`] old); `None` only if the random source has never worked.
    pub(crate) fn current(&mut self, now: Instant) -> Option<Key> {
        let stale = self
            .keys
            .front()
            .is_none_or(|k| now.saturating_duration_since(k.born) >= ROTATE);
        // Should the random source fail, the old key serves on.
        if stale && let Some(key) = Key::new(now) {
            self.keys.push_front(key);
            self.keys.truncate(KEPT);
        }
        self.keys.front().cloned()
    }

    /// The key named `name`, if kept at `now`.
    pub(crate) fn find(&mut self, name: &[u8; 16], now: Instant) -> Option<Found> {
        let oldest_kept = ROTATE * u32::try_from(KEPT).unwrap_or(u32::MAX);
        self.keys
            .retain(|k| now.saturating_duration_since(k.born) < oldest_kept);
        let at = self.keys.iter().position(|k| k.name == *name)?;
        let key = self.keys[at].clone();
        Some(if at == 0 {
            Found::Current(key)
        } else {
            Found::Renew(key)
        })
    }
}

static RING: LazyLock<Mutex<Ring>> = LazyLock::new(Mutex::default);

/// For the callback: the key for a new ticket.
pub(super) fn for_encrypt() -> Option<Key> {
    RING.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .current(Instant::now())
}

/// For the callback: the key a ticket names.
pub(super) fn for_decrypt(name: &[u8; 16]) -> Option<Found> {
    RING.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .find(name, Instant::now())
}

/// Use the rotating keys for every ticket `ctx` issues or accepts.
pub(crate) fn install(ctx: &mut openssl::ssl::SslContextBuilder) {
    ffi::set_ticket_key_callback(ctx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_and_old_ones_are_renewed_then_dropped() {
        let t0 = Instant::now();
        let mut ring = Ring::default();
        let first = ring.current(t0).unwrap();
        // Same key until ROTATE has passed.
        let again = ring.current(t0 + ROTATE / 2).unwrap();
        assert_eq!(first.name, again.name);
        assert!(matches!(
            ring.find(&first.name, t0 + ROTATE / 2),
            Some(Found::Current(_))
        ));
        // A new key after ROTATE; the first one still decrypts, renewed.
        let second = ring.current(t0 + ROTATE).unwrap();
        assert_ne!(first.name, second.name);
        assert_ne!(first.aes, second.aes);
        assert!(matches!(
            ring.find(&first.name, t0 + ROTATE),
            Some(Found::Renew(k)) if k.aes == first.aes
        ));
        assert!(matches!(
            ring.find(&second.name, t0 + ROTATE),
            Some(Found::Current(_))
        ));
        // After KEPT x ROTATE the first key is gone: full handshake.
        let late = t0 + ROTATE * 3;
        ring.current(late).unwrap();
        assert!(ring.find(&first.name, late).is_none());
        assert!(ring.find(&[0; 16], late).is_none());
        assert!(ring.keys.len() <= KEPT);
    }
}
