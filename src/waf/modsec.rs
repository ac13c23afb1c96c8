//! A thin, safe binding of libmodsecurity 3's C API (Debian 12 ships 3.0.9;
//! the `modsecurity` crate 1.x needs >= 3.0.13). Only what edgeward uses:
//! rule sets compiled from text, request transactions, interventions and the
//! per-transaction log callback that reports every matched rule.

use super::engine::{self, EngineError, RuleMatch, Ruleset, Transaction, Verdict};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, OnceLock};

#[repr(C)]
struct RawModSecurity {
    _private: [u8; 0],
}
#[repr(C)]
struct RawRulesSet {
    _private: [u8; 0],
}
#[repr(C)]
struct RawTransaction {
    _private: [u8; 0],
}

#[repr(C)]
struct RawIntervention {
    status: c_int,
    pause: c_int,
    url: *mut c_char,
    log: *mut c_char,
    disruptive: c_int,
}

type LogCb = unsafe extern "C" fn(*mut c_void, *const c_void);

#[link(name = "modsecurity")]
unsafe extern "C" {
    fn msc_init() -> *mut RawModSecurity;
    fn msc_set_connector_info(msc: *mut RawModSecurity, connector: *const c_char);
    fn msc_set_log_cb(msc: *mut RawModSecurity, cb: LogCb);

    fn msc_create_rules_set() -> *mut RawRulesSet;
    fn msc_rules_add(
        rules: *mut RawRulesSet,
        plain: *const c_char,
        error: *mut *const c_char,
    ) -> c_int;
    fn msc_rules_cleanup(rules: *mut RawRulesSet) -> c_int;

    fn msc_new_transaction_with_id(
        ms: *mut RawModSecurity,
        rules: *mut RawRulesSet,
        id: *mut c_char,
        log_cb_data: *mut c_void,
    ) -> *mut RawTransaction;
    fn msc_process_connection(
        t: *mut RawTransaction,
        client: *const c_char,
        c_port: c_int,
        server: *const c_char,
        s_port: c_int,
    ) -> c_int;
    fn msc_process_uri(
        t: *mut RawTransaction,
        uri: *const c_char,
        protocol: *const c_char,
        http_version: *const c_char,
    ) -> c_int;
    fn msc_add_n_request_header(
        t: *mut RawTransaction,
        key: *const u8,
        len_key: usize,
        value: *const u8,
        len_value: usize,
    ) -> c_int;
    fn msc_process_request_headers(t: *mut RawTransaction) -> c_int;
    fn msc_append_request_body(t: *mut RawTransaction, body: *const u8, size: usize) -> c_int;
    fn msc_process_request_body(t: *mut RawTransaction) -> c_int;
    fn msc_intervention(t: *mut RawTransaction, it: *mut RawIntervention) -> c_int;
    fn msc_transaction_cleanup(t: *mut RawTransaction);
}

/// The process-wide ModSecurity instance (never freed).
struct Instance(*mut RawModSecurity);
// SAFETY: the instance is created once and only read afterwards (libmodsecurity
// reads it from every transaction, which is how multi-threaded servers use it);
// it is never freed, so moving the pointer to another thread is harmless.
unsafe impl Send for Instance {}
// SAFETY: as for Send: after `instance()` has set it up, every thread only
// reads it.
unsafe impl Sync for Instance {}

fn instance() -> &'static Instance {
    static INSTANCE: OnceLock<Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        // SAFETY: msc_init takes no arguments; its result is checked below.
        let ms = unsafe { msc_init() };
        assert!(!ms.is_null(), "msc_init failed");
        let name = CString::new(concat!("edgeward ", env!("CARGO_PKG_VERSION"))).unwrap();
        // SAFETY: `ms` is the live instance just created, not yet shared;
        // `name` is NUL-terminated and outlives the call (libmodsecurity
        // copies it).
        unsafe { msc_set_connector_info(ms, name.as_ptr()) };
        // SAFETY: `ms` as above; `log_callback` has the C signature
        // libmodsecurity calls (ModSecLogCb) and lives forever.
        unsafe { msc_set_log_cb(ms, log_callback) };
        Instance(ms)
    })
}

/// Called by libmodsecurity for every logged rule match, on the thread that
/// runs the transaction, during one of the transaction's calls; `data` is
/// the transaction's `MatchList` pointer.
unsafe extern "C" fn log_callback(data: *mut c_void, msg: *const c_void) {
    if data.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: `data` is the `MatchList` pointer of the transaction whose call
    // is running (handed over in `Ruleset::transaction`, freed only after
    // msc_transaction_cleanup); that call is made from a `&mut self` method
    // of `ModSecTransaction`, which holds no reference into the list across
    // it, so this is the only reference to the list while it lives.
    let matches = unsafe { &mut *data.cast::<Matches>() };
    // SAFETY: `msg` is a NUL-terminated string (TextLogProperty, the C API's
    // default) that stays valid for the callback.
    let text = unsafe { CStr::from_ptr(msg.cast::<c_char>()) }.to_bytes();
    if matches.list.len() < MAX_MATCHES
        && let Some(m) = engine::parse_log_line(text)
    {
        matches.list.push(m);
    }
}

/// Bound on the matches kept per request (a request can match a rule per
/// argument; the event log keeps every distinct id anyway).
const MAX_MATCHES: usize = 512;

#[derive(Default)]
struct Matches {
    list: Vec<RuleMatch>,
}

/// A transaction's matches, owned through a raw pointer: the same pointer is
/// the log callback's data in libmodsecurity, so no `Box` or `&mut` may
/// claim it for longer than one access (a moved or re-borrowed Box would
/// invalidate the copy C holds). Freed on drop, which `ModSecTransaction`
/// orders after msc_transaction_cleanup.
struct MatchList(NonNull<Matches>);

impl MatchList {
    fn new() -> MatchList {
        let raw = Box::into_raw(Box::<Matches>::default());
        MatchList(NonNull::new(raw).expect("Box::into_raw is never null"))
    }

    /// The pointer handed to libmodsecurity.
    fn as_c_data(&self) -> *mut c_void {
        self.0.as_ptr().cast()
    }
}

impl Drop for MatchList {
    fn drop(&mut self) {
        // SAFETY: the pointer came from Box::into_raw in `new` and is freed
        // only here, once; whoever handed it to libmodsecurity has ended the
        // transaction first (see `ModSecTransaction`'s field order), so
        // nothing uses it any more.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A compiled rule set.
pub(crate) struct ModSecRuleset {
    rules: *mut RawRulesSet,
}

// SAFETY: a compiled RulesSet is immutable after loading and libmodsecurity
// evaluates it from many transactions at once; it is freed only by the last
// owner (Drop).
unsafe impl Send for ModSecRuleset {}
// SAFETY: as for Send: shared only for reading.
unsafe impl Sync for ModSecRuleset {}

struct RulesPtr(*mut RawRulesSet);
// SAFETY: handed over whole to the thread that frees it.
unsafe impl Send for RulesPtr {}

impl Drop for ModSecRuleset {
    fn drop(&mut self) {
        // The last Arc is gone (every transaction holds one, so none is
        // running). Freeing a CRS rule set takes milliseconds: not on the
        // thread that dropped it, which may be a proxy worker finishing the
        // last request of a replaced configuration.
        let rules = RulesPtr(self.rules);
        let free = move || {
            let rules = rules;
            // SAFETY: `rules.0` came from msc_create_rules_set and nothing
            // refers to it any more (the last owner is gone); it is freed
            // once, here.
            let rc = unsafe { msc_rules_cleanup(rules.0) };
            if rc != 1 {
                log::warn!("libmodsecurity could not free an old WAF rule set ({rc})");
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("waf-free".into())
            .spawn(free)
        {
            log::warn!("could not start a thread to free an old WAF rule set ({e}); it is kept");
        }
    }
}

/// Take a string libmodsecurity allocated with malloc (an error or log
/// message): its text, then free it. None for a null pointer.
///
/// # Safety
/// `s` is null or a NUL-terminated string from malloc that nothing else
/// uses or frees.
unsafe fn take_c_string(s: *mut c_char) -> Option<Vec<u8>> {
    if s.is_null() {
        return None;
    }
    // SAFETY: by the contract, `s` is a valid NUL-terminated string; the
    // bytes are copied before it is freed.
    let bytes = unsafe { CStr::from_ptr(s) }.to_bytes().to_vec();
    // SAFETY: by the contract, `s` came from malloc and is ours to free, once.
    unsafe { libc::free(s.cast()) };
    Some(bytes)
}

impl ModSecRuleset {
    /// Compile ModSecurity configuration text (with `Include`s of absolute
    /// paths). The error is libmodsecurity's own message.
    pub(crate) fn compile(text: &str) -> Result<Arc<ModSecRuleset>, EngineError> {
        instance();
        let c = CString::new(text).map_err(|_| EngineError("rules contain a NUL byte".into()))?;
        // libmodsecurity's rule parser keeps its state in globals: two
        // compiles at once corrupt each other (wrong errors, crashes;
        // ModSecurity issues #2536, #3138). One at a time, process-wide.
        static PARSER: Mutex<()> = Mutex::new(());
        let _parsing = PARSER.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: msc_create_rules_set takes no arguments; its result is
        // checked below.
        let rules = unsafe { msc_create_rules_set() };
        if rules.is_null() {
            return Err(EngineError(
                "libmodsecurity could not create a rule set".into(),
            ));
        }
        // Owned from here: freed (by Drop) on every return below.
        let set = Arc::new(ModSecRuleset { rules });
        let mut error: *const c_char = ptr::null();
        // SAFETY: `rules` is the fresh rule set, used by this thread only;
        // no other parse runs (PARSER is held); `c` is NUL-terminated and outlives the call; `error` is a live
        // out-parameter, set on failure to a string libmodsecurity allocates
        // with strdup and leaves to us.
        let n = unsafe { msc_rules_add(rules, c.as_ptr(), &mut error) };
        if n < 0 {
            // SAFETY: `error` is null or the strdup'ed message, ours alone.
            let msg = unsafe { take_c_string(error.cast_mut()) };
            return Err(EngineError(msg.map_or_else(
                || "unknown error".to_string(),
                |m| String::from_utf8_lossy(&m).trim().to_string(),
            )));
        }
        Ok(set)
    }
}

impl Ruleset for Arc<ModSecRuleset> {
    fn transaction(&self, id: &str) -> Result<Box<dyn Transaction>, EngineError> {
        let id = CString::new(id).map_err(|_| EngineError("request id has a NUL byte".into()))?;
        let matches = MatchList::new();
        // SAFETY: the instance lives forever; the rule set outlives the
        // transaction (it keeps an Arc); libmodsecurity copies the id (the
        // C prototype is not const, it is not written). The callback data is
        // the `MatchList` pointer, which stays valid until the transaction
        // is cleaned up (freed after msc_transaction_cleanup in Drop, or
        // right away below if no transaction was created).
        let raw = unsafe {
            msc_new_transaction_with_id(
                instance().0,
                self.rules,
                id.as_ptr().cast_mut(),
                matches.as_c_data(),
            )
        };
        let Some(raw) = NonNull::new(raw) else {
            return Err(EngineError(
                "libmodsecurity could not create a transaction".into(),
            ));
        };
        Ok(Box::new(ModSecTransaction {
            raw,
            matches,
            _rules: self.clone(),
        }))
    }
}

/// One request's libmodsecurity transaction.
///
/// Field order matters: fields drop in declaration order after `Drop::drop`
/// has cleaned up `raw`, so `matches` (the log callback's data) is freed
/// after libmodsecurity has let go of it, and the rule set after both.
pub(crate) struct ModSecTransaction {
    raw: NonNull<RawTransaction>,
    matches: MatchList,
    _rules: Arc<ModSecRuleset>,
}

// SAFETY: a transaction is used by one thread at a time (it moves between
// blocking-pool threads, never shared); libmodsecurity keeps no thread-local
// state for it; the match list is heap memory owned by it.
unsafe impl Send for ModSecTransaction {}
// SAFETY: the only `&self` method reads the Rust-owned match list, which
// libmodsecurity writes (through the log callback) only during calls made
// from `&mut self` methods, so shared readers never race with a writer.
unsafe impl Sync for ModSecTransaction {}

fn cstr(s: &str) -> CString {
    // Values come from parsed requests; a NUL byte cannot be passed through
    // the C API, so it is cut there (ModSecurity would stop there too).
    let cut = s.find('\0').map_or(s, |i| &s[..i]);
    CString::new(cut).unwrap_or_default()
}

fn check(what: &str, rc: c_int) -> Result<(), EngineError> {
    if rc == 1 {
        Ok(())
    } else {
        Err(EngineError(format!("libmodsecurity {what} failed ({rc})")))
    }
}

impl ModSecTransaction {
    /// The match list, for reading or adding to between libmodsecurity
    /// calls. The reference borrows all of `self`, so no call (they all go
    /// through `self.raw`) can run while it lives.
    fn matches_mut(&mut self) -> &mut Matches {
        // SAFETY: the pointer is valid (freed only when `self` drops) and
        // libmodsecurity writes through its copy only during a call on
        // `self.raw`, which the exclusive borrow of `self` rules out while
        // this reference lives.
        unsafe { self.matches.0.as_mut() }
    }

    fn intervention(&mut self) -> Verdict {
        let mut it = RawIntervention {
            status: 200,
            pause: 0,
            url: ptr::null_mut(),
            log: ptr::null_mut(),
            disruptive: 0,
        };
        // SAFETY: `self.raw` is our live transaction; `it` is a valid
        // out-parameter for the call. libmodsecurity may set `url` and `log`
        // to strings it allocates with malloc and leaves to us (freed below).
        let r = unsafe { msc_intervention(self.raw.as_ptr(), &mut it) };
        // SAFETY: `url` is null or a malloc'ed string only we hold.
        let _ = unsafe { take_c_string(it.url) };
        // SAFETY: `log` is null or a malloc'ed string only we hold.
        if let Some(log) = unsafe { take_c_string(it.log) } {
            // The disruptive rule's message comes only here (the log
            // callback reports the non-disruptive matches).
            if let Some(m) = engine::parse_log_line(&log) {
                let matches = self.matches_mut();
                if !matches.list.iter().any(|x| x.id == m.id) {
                    matches.list.push(m);
                }
            }
        }
        if r != 0 || it.disruptive != 0 {
            let status = u16::try_from(it.status)
                .ok()
                .filter(|s| (400..600).contains(s))
                .unwrap_or(403);
            Verdict::Block { status }
        } else {
            Verdict::Pass
        }
    }
}

impl Transaction for ModSecTransaction {
    fn request_headers(&mut self, req: &engine::Request<'_>) -> Result<Verdict, EngineError> {
        let client = cstr(req.client_ip);
        let server = cstr(req.server_ip);
        let uri = cstr(&String::from_utf8_lossy(req.uri));
        let method = cstr(req.method);
        let version = cstr(req.http_version);
        // In every call below: `self.raw` is our live transaction, used by
        // this thread only (`&mut self`), with no reference into the match
        // list alive (the log callback may write it); the strings and slices
        // are valid for the call and libmodsecurity copies them.
        // SAFETY: see above; `client` and `server` are NUL-terminated.
        let rc = unsafe {
            msc_process_connection(
                self.raw.as_ptr(),
                client.as_ptr(),
                c_int::from(req.client_port),
                server.as_ptr(),
                c_int::from(req.server_port),
            )
        };
        check("process_connection", rc)?;
        // SAFETY: see above; `uri`, `method` and `version` are NUL-terminated.
        let rc = unsafe {
            msc_process_uri(
                self.raw.as_ptr(),
                uri.as_ptr(),
                method.as_ptr(),
                version.as_ptr(),
            )
        };
        check("process_uri", rc)?;
        for (k, v) in &req.headers {
            // SAFETY: see above; `k` and `v` are slices passed with their
            // lengths (no NUL needed).
            let rc = unsafe {
                msc_add_n_request_header(
                    self.raw.as_ptr(),
                    k.as_ptr(),
                    k.len(),
                    v.as_ptr(),
                    v.len(),
                )
            };
            check("add_n_request_header", rc)?;
        }
        // SAFETY: see above.
        let rc = unsafe { msc_process_request_headers(self.raw.as_ptr()) };
        check("process_request_headers", rc)?;
        Ok(self.intervention())
    }

    fn request_body(&mut self, body: &[u8]) -> Result<Verdict, EngineError> {
        if !body.is_empty() {
            // SAFETY: `self.raw` is our live transaction, used by this thread
            // only, with no reference into the match list alive; `body` is
            // valid for `body.len()` bytes during the call and
            // libmodsecurity copies it.
            let rc =
                unsafe { msc_append_request_body(self.raw.as_ptr(), body.as_ptr(), body.len()) };
            if rc != 1 {
                // The body limit action "Reject" reports through an
                // intervention, not an error.
                let v = self.intervention();
                if matches!(v, Verdict::Block { .. }) {
                    return Ok(v);
                }
                return Err(EngineError(format!(
                    "libmodsecurity append_request_body failed ({rc})"
                )));
            }
        }
        // SAFETY: as above (no pointer but the transaction's).
        let rc = unsafe { msc_process_request_body(self.raw.as_ptr()) };
        check("process_request_body", rc)?;
        Ok(self.intervention())
    }

    fn matches(&self) -> &[RuleMatch] {
        // SAFETY: the pointer is valid (freed only when `self` drops);
        // libmodsecurity writes through its copy only during calls made from
        // `&mut self` methods, which cannot run while this shared borrow of
        // `self` lives, and no `&mut` to the list outlives such a method.
        let matches = unsafe { self.matches.0.as_ref() };
        &matches.list
    }
}

impl Drop for ModSecTransaction {
    fn drop(&mut self) {
        // SAFETY: `raw` is ours and cleaned up once, here; after this
        // libmodsecurity no longer calls back with the match list, which
        // drops (and is freed) after this, with the other fields.
        unsafe { msc_transaction_cleanup(self.raw.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(uri: &'a [u8], headers: Vec<(&'a [u8], &'a [u8])>) -> engine::Request<'a> {
        engine::Request {
            client_ip: "192.0.2.1",
            client_port: 40000,
            server_ip: "127.0.0.1",
            server_port: 8080,
            method: "GET",
            uri,
            http_version: "1.1",
            headers,
        }
    }

    /// The log callback writes the match list through the pointer C holds
    /// while the transaction (and the Box holding it) moves around; the
    /// disruptive rule's match comes from the intervention.
    #[test]
    fn matches_are_collected_across_moves_and_phases() {
        let rules = ModSecRuleset::compile(concat!(
            "SecRuleEngine On\n",
            "SecRequestBodyAccess On\n",
            "SecRule ARGS \"@contains attack\" \"id:1001,phase:1,pass,log,msg:'arg'\"\n",
            "SecRule REQUEST_HEADERS:X-Bad \"@streq yes\" \"id:1002,phase:1,deny,status:418,log,msg:'bad header'\"\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let txn = rules.transaction("t1").unwrap();
        let mut moved = vec![txn];
        let mut txn = moved.pop().unwrap();
        let v = txn
            .request_headers(&request(
                b"/?q=attack",
                vec![(b"Host", b"a.test"), (b"X-Bad", b"yes")],
            ))
            .unwrap();
        assert_eq!(v, Verdict::Block { status: 418 });
        let ids: Vec<u32> = txn.matches().iter().map(|m| m.id).collect();
        assert_eq!(ids, [1001, 1002]);
        assert_eq!(txn.matches()[0].msg, "arg");
        assert_eq!(txn.matches()[1].msg, "bad header");

        let mut txn = rules.transaction("t2").unwrap();
        let v = txn
            .request_headers(&request(b"/", vec![(b"Host", b"a.test")]))
            .unwrap();
        assert_eq!(v, Verdict::Pass);
        assert_eq!(txn.request_body(b"").unwrap(), Verdict::Pass);
        assert!(txn.matches().is_empty());
    }

    #[test]
    fn compile_errors_are_libmodsecurity_messages() {
        let Err(e) = ModSecRuleset::compile("SecNoSuchDirective On") else {
            panic!("an unknown directive compiled");
        };
        assert!(e.0.contains("SecNoSuchDirective"), "{e}");
    }
}
