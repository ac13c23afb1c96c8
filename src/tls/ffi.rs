//! The two OpenSSL callbacks the `openssl` crate does not wrap: the session
//! ticket key callback (`tickets.rs` holds the keys) and the info callback
//! that sees alerts and finished handshakes (`watch.rs` counts failures).
//! Everything `unsafe` of the TLS module is in this file.

use super::tickets::{self, Found};
use super::watch;
use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslContextBuilder, SslRef};
use openssl_sys::{EVP_CIPHER_CTX, EVP_MAC_CTX, OSSL_PARAM, SSL, SSL_CTX};
use std::ffi::{c_char, c_int, c_uchar};
use std::ptr;

/// `SSL_CB_*` from `openssl/ssl.h`.
const SSL_CB_READ: c_int = 0x04;
const SSL_CB_WRITE: c_int = 0x08;
const SSL_CB_ALERT: c_int = 0x4000;
const SSL_CB_HANDSHAKE_DONE: c_int = 0x20;
/// The IV of AES-256-CBC (`EVP_MAX_IV_LENGTH` is 16 as well).
const IV_LEN: usize = 16;

type TicketKeyCallback = extern "C" fn(
    *mut SSL,
    *mut c_uchar,
    *mut c_uchar,
    *mut EVP_CIPHER_CTX,
    *mut EVP_MAC_CTX,
    c_int,
) -> c_int;
type InfoCallback = extern "C" fn(*const SSL, c_int, c_int);

// Functions of OpenSSL 3's libssl and libcrypto (linked through
// openssl-sys) that openssl-sys does not declare.
unsafe extern "C" {
    fn SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx: *mut SSL_CTX, cb: TicketKeyCallback) -> c_int;
    fn SSL_CTX_set_info_callback(ctx: *mut SSL_CTX, cb: InfoCallback);
    fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        bsize: usize,
    ) -> OSSL_PARAM;
}

pub(super) fn set_ticket_key_callback(ctx: &mut SslContextBuilder) {
    // SAFETY: `ctx.as_ptr()` is the live context `ctx` owns; the callback
    // is a plain function with the signature OpenSSL 3 documents for
    // SSL_CTX_set_tlsext_ticket_key_evp_cb.
    unsafe { SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx.as_ptr(), ticket_key) };
}

pub(super) fn set_info_callback(ctx: &mut SslContextBuilder) {
    // SAFETY: as above, with the signature of SSL_CTX_set_info_callback.
    unsafe { SSL_CTX_set_info_callback(ctx.as_ptr(), info) };
}

/// Key the ticket HMAC: SHA-256 under `key`.
fn set_mac(mac: *mut EVP_MAC_CTX, key: &[u8; 32]) -> bool {
    let mut key = *key;
    let mut digest = *b"SHA256\0";
    let params = [
        // SAFETY: the names are NUL-terminated literals; `key` and `digest`
        // outlive `params`, which is used only in the call below.
        unsafe {
            openssl_sys::OSSL_PARAM_construct_octet_string(
                c"key".as_ptr(),
                key.as_mut_ptr().cast(),
                key.len(),
            )
        },
        // SAFETY: as above; a size of 0 means "up to the NUL".
        unsafe {
            OSSL_PARAM_construct_utf8_string(c"digest".as_ptr(), digest.as_mut_ptr().cast(), 0)
        },
        // SAFETY: builds a terminator; reads nothing.
        unsafe { openssl_sys::OSSL_PARAM_construct_end() },
    ];
    // SAFETY: `mac` is the MAC context OpenSSL handed to this callback;
    // `params` is a terminated array valid for the call (OpenSSL copies).
    unsafe { openssl_sys::EVP_MAC_CTX_set_params(mac, params.as_ptr()) == 1 }
}

/// The ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)):
/// `enc == 1` fills `key_name` (16 bytes) and `iv` and keys `cipher` and
/// `mac` for a new ticket; `enc == 0` finds the key `key_name` names and
/// keys them to decrypt. Returns -1 on error, 0 for "unknown key" (full
/// handshake), 1 for success, 2 for "accepted, issue a new ticket".
extern "C" fn ticket_key(
    _ssl: *mut SSL,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cipher: *mut EVP_CIPHER_CTX,
    mac: *mut EVP_MAC_CTX,
    enc: c_int,
) -> c_int {
    // SAFETY: takes a static cipher description; no arguments.
    let aes = unsafe { openssl_sys::EVP_aes_256_cbc() };
    if enc == 1 {
        let Some(key) = tickets::for_encrypt() else {
            return -1;
        };
        let mut new_iv = [0u8; IV_LEN];
        if openssl::rand::rand_bytes(&mut new_iv).is_err() {
            return -1;
        }
        // SAFETY: OpenSSL passes a 16-byte `key_name` buffer to fill.
        unsafe { ptr::copy_nonoverlapping(key.name.as_ptr(), key_name, key.name.len()) };
        // SAFETY: OpenSSL passes an `iv` buffer of EVP_MAX_IV_LENGTH (16).
        unsafe { ptr::copy_nonoverlapping(new_iv.as_ptr(), iv, IV_LEN) };
        if !set_mac(mac, &key.hmac) {
            return -1;
        }
        // SAFETY: `cipher` is the context OpenSSL handed us; key and IV are
        // 32 and 16 bytes as AES-256-CBC needs, and OpenSSL copies them.
        let ok = unsafe {
            openssl_sys::EVP_EncryptInit_ex(
                cipher,
                aes,
                ptr::null_mut(),
                key.aes.as_ptr(),
                new_iv.as_ptr(),
            )
        };
        return if ok == 1 { 1 } else { -1 };
    }
    // SAFETY: OpenSSL passes the ticket's 16-byte key name.
    let name = unsafe { ptr::read(key_name.cast::<[u8; 16]>()) };
    let (key, fresh) = match tickets::for_decrypt(&name) {
        Some(Found::Current(k)) => (k, true),
        Some(Found::Renew(k)) => (k, false),
        None => return 0,
    };
    // SAFETY: OpenSSL passes the ticket's IV (EVP_MAX_IV_LENGTH bytes).
    let ticket_iv = unsafe { ptr::read(iv.cast::<[u8; IV_LEN]>()) };
    if !set_mac(mac, &key.hmac) {
        return -1;
    }
    // SAFETY: as for encryption above.
    let ok = unsafe {
        openssl_sys::EVP_DecryptInit_ex(
            cipher,
            aes,
            ptr::null_mut(),
            key.aes.as_ptr(),
            ticket_iv.as_ptr(),
        )
    };
    match (ok == 1, fresh) {
        (false, _) => -1,
        (true, true) => 1,
        (true, false) => 2,
    }
}

/// The info callback (SSL_CTX_set_info_callback(3)): a finished handshake
/// or a fatal alert, sent or received, goes to `watch`.
extern "C" fn info(ssl: *const SSL, kind: c_int, value: c_int) {
    let done = kind & SSL_CB_HANDSHAKE_DONE != 0;
    let alert = kind & SSL_CB_ALERT != 0 && (value >> 8) == 2;
    if !done && !alert {
        return;
    }
    // SAFETY: OpenSSL calls this with the connection's live SSL, used by
    // this thread for the duration of the call; only shared access (ex
    // data lookup) is made through the reference.
    let ssl = unsafe { SslRef::from_ptr(ssl.cast_mut()) };
    if done {
        watch::finished(ssl);
    } else {
        let code = u8::try_from(value & 0xff).unwrap_or(u8::MAX);
        if kind & SSL_CB_WRITE != 0 {
            watch::alert_sent(ssl, code);
        } else if kind & SSL_CB_READ != 0 {
            watch::alert_received(ssl, code);
        }
    }
}
