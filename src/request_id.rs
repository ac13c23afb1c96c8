//! `X-Request-Id`: an incoming id is kept when it matches
//! `[A-Za-z0-9._-]{1,64}`, otherwise a new one is made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const HEADER: &str = "x-request-id";
/// `HEADER` as written on the wire; `.name()` for lookups (looking it up by
/// `&str` parses it every time).
pub(crate) static NAME: pingora::http::TitledHeaderName =
    pingora::http::TitledHeaderName::new("X-Request-Id", HEADER);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS; mix in time and pid so that two
    // processes never share a prefix.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
});

/// Whether a client-supplied id may be kept.
pub(crate) fn is_valid(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new id: 32 lowercase hex digits, unique within and across processes.
pub(crate) fn generate() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(32);
    id.push_str(PREFIX_HEX.as_str());
    push_hex(&mut id, n);
    id
}

/// `PREFIX` in hex, once: each id only formats its counter.
static PREFIX_HEX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut s = String::with_capacity(16);
    push_hex(&mut s, *PREFIX);
    s
});

/// `n` as 16 lowercase hex digits.
fn push_hex(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in n.to_be_bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// The id for a request that carried `incoming` (if any).
pub(crate) fn for_request(incoming: Option<&[u8]>) -> String {
    match incoming {
        // `is_valid`: ASCII only, so never `generate` here.
        Some(id) if is_valid(id) => {
            std::str::from_utf8(id).map_or_else(|_| generate(), str::to_owned)
        }
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_ids_and_replaces_others() {
        assert_eq!(for_request(Some(b"abc-123_X.y")), "abc-123_X.y");
        let long = [b'a'; 65];
        for bad in [&b""[..], b"a b", b"x\r\ny", b"<script>", &long[..]] {
            let id = for_request(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(is_valid(id.as_bytes()));
        }
        assert_ne!(generate(), generate());
    }

    #[test]
    fn generated_ids_are_prefix_then_counter_in_hex() {
        let (a, b) = (generate(), generate());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert_eq!(id[..16], format!("{:016x}", *PREFIX));
        }
        let count = |id: &str| u64::from_str_radix(&id[16..], 16).ok();
        // Other tests may take ids in between: later, not next.
        assert!(count(&b) > count(&a), "{a} {b}");
    }
}
