//! A thin, safe binding of libmodsecurity 3's C API (Debian 12 ships 3.0.9;
//! the `modsecurity` crate 1.x needs >= 3.0.13). Only what edgeward uses:
//! rule sets compiled from text, request transactions, interventions and the
//! per-transaction log callback that reports every matched rule.

use super::engine::{self, EngineError, RuleMatch, Ruleset, Transaction, Verdict};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::{Arc, OnceLock};

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
// reads it from every transaction, which is how multi-threaded servers use it).
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

fn instance() -> &'static Instance {
    static INSTANCE: OnceLock<Instance> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        // SAFETY: plain constructor calls; the strings outlive the calls.
        unsafe {
            let ms = msc_init();
            assert!(!ms.is_null(), "msc_init failed");
            let name = CString::new(concat!("edgeward ", env!("CARGO_PKG_VERSION"))).unwrap();
            msc_set_connector_info(ms, name.as_ptr());
            msc_set_log_cb(ms, log_callback);
            Instance(ms)
        }
    })
}

/// Called by libmodsecurity for every logged rule match, on the thread that
/// runs the transaction; `data` is the transaction's `Matches`.
unsafe extern "C" fn log_callback(data: *mut c_void, msg: *const c_void) {
    if data.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: `data` is the Box<Matches> owned by the running transaction
    // (see `ModSecTransaction`), used by one thread at a time; `msg` is a
    // NUL-terminated string (TextLogProperty, the C API's default).
    let (matches, text) = unsafe {
        (
            &mut *(data as *mut Matches),
            CStr::from_ptr(msg as *const c_char).to_bytes(),
        )
    };
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

/// A compiled rule set.
pub(crate) struct ModSecRuleset {
    rules: *mut RawRulesSet,
}

// SAFETY: a compiled RulesSet is immutable after loading and libmodsecurity
// evaluates it from many transactions at once.
unsafe impl Send for ModSecRuleset {}
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
            // SAFETY: nothing refers to the rule set any more.
            unsafe {
                msc_rules_cleanup(rules.0);
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

impl ModSecRuleset {
    /// Compile ModSecurity configuration text (with `Include`s of absolute
    /// paths). The error is libmodsecurity's own message.
    pub(crate) fn compile(text: &str) -> Result<Arc<ModSecRuleset>, String> {
        instance();
        let c = CString::new(text).map_err(|_| "rules contain a NUL byte".to_string())?;
        // SAFETY: `rules` is fresh; `error` is set by libmodsecurity to a
        // string it allocates with strdup on failure.
        unsafe {
            let rules = msc_create_rules_set();
            if rules.is_null() {
                return Err("libmodsecurity could not create a rule set".into());
            }
            let set = Arc::new(ModSecRuleset { rules });
            let mut error: *const c_char = ptr::null();
            let n = msc_rules_add(rules, c.as_ptr(), &mut error);
            if n < 0 {
                let msg = if error.is_null() {
                    "unknown error".to_string()
                } else {
                    let s = CStr::from_ptr(error).to_string_lossy().trim().to_string();
                    libc::free(error as *mut c_void);
                    s
                };
                return Err(msg);
            }
            Ok(set)
        }
    }
}

impl Ruleset for Arc<ModSecRuleset> {
    fn transaction(&self, id: &str) -> Result<Box<dyn Transaction>, EngineError> {
        let id = CString::new(id).map_err(|_| EngineError("request id has a NUL byte".into()))?;
        let mut matches = Box::<Matches>::default();
        // SAFETY: the rule set outlives the transaction (we keep an Arc);
        // `matches` is boxed, so its address is stable while the box lives in
        // the returned transaction. libmodsecurity copies the id.
        let raw = unsafe {
            msc_new_transaction_with_id(
                instance().0,
                self.rules,
                id.as_ptr() as *mut c_char,
                &mut *matches as *mut Matches as *mut c_void,
            )
        };
        if raw.is_null() {
            return Err(EngineError(
                "libmodsecurity could not create a transaction".into(),
            ));
        }
        Ok(Box::new(ModSecTransaction {
            raw,
            matches,
            _rules: self.clone(),
        }))
    }
}

pub(crate) struct ModSecTransaction {
    raw: *mut RawTransaction,
    matches: Box<Matches>,
    _rules: Arc<ModSecRuleset>,
}

// SAFETY: a transaction is used by one thread at a time (it moves between
// blocking-pool threads, never shared); the only `&self` method reads the
// Rust-owned match list, which libmodsecurity writes only during `&mut self`
// calls.
unsafe impl Send for ModSecTransaction {}
unsafe impl Sync for ModSecTransaction {}

fn cstr(s: &str) -> CString {
    // Values come from parsed requests; a NUL byte cannot be passed through
    // the C API, so it is cut there (ModSecurity would stop there too).
    let cut = s.find('\0').map_or(s, |i| &s[..i]);
    CString::new(cut).unwrap_or_default()
}

impl ModSecTransaction {
    fn check(&mut self, what: &str, rc: c_int) -> Result<(), EngineError> {
        if rc == 1 {
            Ok(())
        } else {
            Err(EngineError(format!("libmodsecurity {what} failed ({rc})")))
        }
    }

    fn intervention(&mut self) -> Verdict {
        let mut it = RawIntervention {
            status: 200,
            pause: 0,
            url: ptr::null_mut(),
            log: ptr::null_mut(),
            disruptive: 0,
        };
        // SAFETY: `it` is a valid out-parameter; libmodsecurity allocates
        // `url` and `log` with malloc, which we free.
        let disruptive = unsafe {
            let r = msc_intervention(self.raw, &mut it);
            if !it.url.is_null() {
                libc::free(it.url as *mut c_void);
            }
            if !it.log.is_null() {
                // The disruptive rule's message comes only here (the log
                // callback reports the non-disruptive matches).
                if let Some(m) = engine::parse_log_line(CStr::from_ptr(it.log).to_bytes())
                    && !self.matches.list.iter().any(|x| x.id == m.id)
                {
                    self.matches.list.push(m);
                }
                libc::free(it.log as *mut c_void);
            }
            r != 0 || it.disruptive != 0
        };
        if disruptive {
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
        // SAFETY: all pointers are valid NUL-terminated strings or slices
        // for the duration of each call; libmodsecurity copies them.
        unsafe {
            let rc = msc_process_connection(
                self.raw,
                client.as_ptr(),
                c_int::from(req.client_port),
                server.as_ptr(),
                c_int::from(req.server_port),
            );
            self.check("process_connection", rc)?;
            let rc = msc_process_uri(self.raw, uri.as_ptr(), method.as_ptr(), version.as_ptr());
            self.check("process_uri", rc)?;
            for (k, v) in &req.headers {
                msc_add_n_request_header(self.raw, k.as_ptr(), k.len(), v.as_ptr(), v.len());
            }
            let rc = msc_process_request_headers(self.raw);
            self.check("process_request_headers", rc)?;
        }
        Ok(self.intervention())
    }

    fn request_body(&mut self, body: &[u8]) -> Result<Verdict, EngineError> {
        // SAFETY: `body` is valid for the call; libmodsecurity copies it.
        unsafe {
            if !body.is_empty() {
                let rc = msc_append_request_body(self.raw, body.as_ptr(), body.len());
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
            let rc = msc_process_request_body(self.raw);
            self.check("process_request_body", rc)?;
        }
        Ok(self.intervention())
    }

    fn matches(&self) -> &[RuleMatch] {
        &self.matches.list
    }
}

impl Drop for ModSecTransaction {
    fn drop(&mut self) {
        // SAFETY: `raw` is ours; after cleanup libmodsecurity no longer calls
        // back with `matches`, which is dropped after this.
        unsafe {
            msc_transaction_cleanup(self.raw);
        }
    }
}
