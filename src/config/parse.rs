//! Read a configuration file into a [`Document`]: the YAML's shape, the
//! global settings, account and site names, and who claims which host name.
//! Every error is recorded with its position in a [`Report`]; the
//! capabilities' sections are validated later by their own modules.

use super::cidr::Cidr;
use super::document::{Document, SiteDoc};
use super::file::{AccountFile, AdminFile, UpstreamFile};
use super::position::PositionIndex;
use super::report::{Place, Report};
use super::units::ConfDuration;
use super::{ConfigError, ConfigErrors, absolute};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_GRACE: Duration = Duration::from_secs(5);

const TOP_KEYS: &[&str] = &[
    "listen",
    "trusted_proxies",
    "supervisor",
    "threads",
    "grace_period",
    "admin",
    "default_site",
    "cache",
    "waf",
    "tls",
    "limits",
    "access_log",
    "accounts",
];

const SITE_KEYS: &str =
    "addresses, upstream, waf, cache, access_log, tls, limits, https_redirect, hsts";

/// The text of the configuration file at `path`.
pub(crate) fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            scope: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })
}

/// Parse configuration text. A file that is not YAML is an error at once;
/// otherwise the document (with whatever could be read) comes back with the
/// report of what is wrong, for the capabilities to add their own errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<(Document, Report), ConfigErrors> {
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|loc| (loc.line(), loc.column()))
                .unwrap_or((1, 1));
            return Err(ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line,
                col,
                scope: String::new(),
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            }]));
        }
    };
    let mut r = Reader {
        report: Report::new(path, PositionIndex::build(text)),
        doc: Document::default(),
    };
    r.document(root);
    Ok((r.doc, r.report))
}

/// serde_yaml appends " at line X column Y"; we print the position up front.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Names that end up in file paths and metric labels.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

struct Reader {
    report: Report,
    doc: Document,
}

/// The global settings as written, before they are checked.
#[derive(Default)]
struct Globals {
    listen: Option<Vec<String>>,
    listen_given: bool,
    threads: Option<usize>,
    grace: Option<ConfDuration>,
    admin: Option<AdminFile>,
    default_site: Option<String>,
    trusted: Option<Vec<String>>,
}

impl Reader {
    /// Deserialize one section; on error record it (with the exact position
    /// of the offending key or value) and return None.
    fn de<T: DeserializeOwned>(&mut self, v: Value, at: &Place) -> Option<T> {
        // Paths are shown relative to the scope: `upstream.address` for a site.
        let path = &at.path;
        let base = match path.first().map(String::as_str) {
            Some("accounts") if path.len() >= 4 && path[2] == "sites" => 4,
            Some("accounts") if path.len() >= 2 => 2,
            _ => 0,
        };
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut full = at.clone();
                for seg in e.path().iter() {
                    full = match seg {
                        serde_path_to_error::Segment::Seq { index } => full.item(*index),
                        serde_path_to_error::Segment::Map { key } => full.child(key),
                        serde_path_to_error::Segment::Enum { variant } => full.child(variant),
                        serde_path_to_error::Segment::Unknown => full,
                    };
                }
                let msg = e.inner().to_string();
                let dotted = full.path[base.min(full.path.len())..]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .fold(String::new(), |mut acc, s| {
                        if !acc.is_empty() && !s.starts_with('[') {
                            acc.push('.');
                        }
                        acc.push_str(s);
                        acc
                    });
                if msg.starts_with("unknown field") {
                    self.report.at_key(&full, format!("{dotted}: {msg}"));
                } else {
                    self.report.at_value(&full, format!("{dotted}: {msg}"));
                }
                None
            }
        }
    }

    fn document(&mut self, root: Value) {
        let root = match root {
            Value::Mapping(m) => m,
            Value::Null => Default::default(),
            _ => {
                self.report.at_value(
                    &Place::default(),
                    "the configuration must be a mapping of settings",
                );
                return;
            }
        };
        let mut g = Globals::default();
        let mut accounts: Vec<(String, Value)> = Vec::new();
        for (k, v) in root {
            let Some(key) = k.as_str().map(str::to_string) else {
                self.report
                    .at_value(&Place::default(), "configuration keys must be strings");
                continue;
            };
            let p = Place::new(&[&key], "");
            match key.as_str() {
                "listen" => {
                    g.listen_given = true;
                    g.listen = match self.de::<OneOrMany>(v, &p) {
                        Some(OneOrMany::One(s)) => Some(vec![s]),
                        Some(OneOrMany::Many(list)) => Some(list),
                        None => None,
                    };
                }
                "supervisor" => self.doc.supervisor = self.de(v, &p),
                "trusted_proxies" => g.trusted = self.de(v, &p),
                "threads" => g.threads = self.de(v, &p),
                "grace_period" => g.grace = self.de(v, &p),
                "admin" => g.admin = self.de(v, &p),
                "default_site" => g.default_site = self.de(v, &p),
                "cache" => self.doc.cache = self.de(v, &p),
                "waf" => self.doc.waf = self.de(v, &p),
                "tls" => self.doc.tls = self.de(v, &p),
                "limits" => self.doc.limits = self.de(v, &p),
                "access_log" => self.doc.access_log = self.de(v, &p),
                "accounts" => match v {
                    Value::Mapping(m) => {
                        for (name, acc) in m {
                            match name.as_str() {
                                Some(n) => accounts.push((n.to_string(), acc)),
                                None => self.report.at_value(&p, "account names must be strings"),
                            }
                        }
                    }
                    Value::Null => {}
                    _ => self
                        .report
                        .at_value(&p, "accounts: expected a mapping of account names"),
                },
                other => self.report.at_key(
                    &p,
                    format!(
                        "unknown key `{other}`; expected one of: {}",
                        TOP_KEYS.join(", ")
                    ),
                ),
            }
        }
        self.globals(&g);
        let mut owners: HashMap<String, String> = HashMap::new();
        for (account, value) in accounts {
            self.account(account, value, &mut owners);
        }
        if let Some(id) = g.default_site {
            if self.doc.sites.iter().any(|s| s.id == id) {
                self.doc.default_site = Some(id);
            } else if self.report.is_clean() {
                self.report.at_value(
                    &Place::new(&["default_site"], ""),
                    format!("default_site: no site {id:?} (write it as account/site)"),
                );
            }
        }
    }

    fn globals(&mut self, g: &Globals) {
        let lp = Place::new(&["listen"], "");
        match &g.listen {
            Some(list) if !list.is_empty() => {
                let mut seen: Vec<SocketAddr> = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    if let Ok(sa) = a.parse::<SocketAddr>() {
                        if seen.iter().any(|s| binds_overlap(*s, sa)) {
                            self.report.at_value(
                                &lp.item(i),
                                format!("listen: {a} overlaps an address listed before it"),
                            );
                        }
                        seen.push(sa);
                    } else {
                        self.report.at_value(
                            &lp.item(i),
                            format!("listen: {a:?} is not an IP:PORT address (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"),
                        );
                    }
                }
                self.doc.listen = list.clone();
            }
            Some(_) => self
                .report
                .at_value(&lp, "listen: give at least one address"),
            None if !g.listen_given => self.report.at_value(
                &Place::default(),
                "listen: missing; give at least one address, e.g. listen: [\"127.0.0.1:8080\"]",
            ),
            // The value did not deserialize: already reported.
            None => {}
        }
        self.doc.threads = match g.threads {
            Some(0) | Some(1025..) => {
                self.report.at_value(
                    &Place::new(&["threads"], ""),
                    "threads: must be between 1 and 1024",
                );
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        self.doc.grace_period = g.grace.map_or(DEFAULT_GRACE, |d| d.0);
        if let Some(a) = g.admin.as_ref().map(|a| &a.listen) {
            let p = Place::new(&["admin", "listen"], "");
            match a.parse::<SocketAddr>() {
                Err(_) => self
                    .report
                    .at_value(&p, format!("admin.listen: {a:?} is not an IP:PORT address")),
                Ok(sa) => {
                    if self
                        .doc
                        .listen
                        .iter()
                        .filter_map(|l| l.parse::<SocketAddr>().ok())
                        .any(|l| binds_overlap(l, sa))
                    {
                        self.report.at_value(
                            &p,
                            format!("admin.listen: {a} is also a public listen address; the admin listener must never be public"),
                        );
                    }
                }
            }
            self.doc.admin_listen = Some(a.clone());
        }
        let tp = Place::new(&["trusted_proxies"], "");
        for (i, t) in g.trusted.iter().flatten().enumerate() {
            match t.parse::<Cidr>() {
                Ok(c) => self.doc.trusted_proxies.push(c),
                Err(why) => self
                    .report
                    .at_value(&tp.item(i), format!("trusted_proxies: {why}")),
            }
        }
    }

    fn account(&mut self, account: String, value: Value, owners: &mut HashMap<String, String>) {
        let ap = Place::new(&["accounts", &account], &format!("account {account}"));
        if !valid_name(&account) {
            self.report.at_key(
                &ap,
                "account names may contain only letters, digits, '-', '_' and '.' (at most 64)",
            );
        }
        let Some(acc) = self.de::<AccountFile>(value, &ap) else {
            return;
        };
        if acc.log_dir.trim().is_empty() {
            self.report
                .at_value(&ap.child("log_dir"), "log_dir: must not be empty");
        }
        let log_dir = absolute(Path::new(&acc.log_dir));
        for (name, value) in acc.sites {
            let id = format!("{account}/{name}");
            let mut sp = ap.child("sites").child(&name);
            sp.scope = format!("site {id}");
            if !valid_name(&name) {
                self.report.at_key(
                    &sp,
                    "site names may contain only letters, digits, '-', '_' and '.' (at most 64)",
                );
            }
            let Some(mut site) = self.site(value, sp) else {
                continue;
            };
            site.id = id;
            site.account = account.clone();
            site.name = name;
            site.log_dir = log_dir.clone();
            self.claim(&mut site, owners);
            self.doc.sites.push(site);
        }
    }

    /// A site's sections one by one, so that one bad section does not hide
    /// the errors of the others.
    fn site(&mut self, value: Value, sp: Place) -> Option<SiteDoc> {
        let Value::Mapping(map) = value else {
            self.report
                .at_value(&sp, "a site must be a mapping with addresses and upstream");
            return None;
        };
        let mark = self.report.mark();
        let mut addresses: Option<Vec<String>> = None;
        let mut upstream: Option<UpstreamFile> = None;
        let mut site = SiteDoc {
            id: String::new(),
            account: String::new(),
            name: String::new(),
            log_dir: Default::default(),
            addresses: None,
            upstream: None,
            waf: None,
            cache: None,
            access_log: None,
            tls: None,
            limits: None,
            https_redirect: None,
            hsts: None,
            at: sp.clone(),
        };
        for (k, v) in map {
            let key = k.as_str().unwrap_or("").to_string();
            let p = sp.child(&key);
            match key.as_str() {
                "addresses" => addresses = self.de(v, &p),
                "upstream" => upstream = self.de(v, &p),
                "waf" => site.waf = self.de(v, &p),
                "cache" => site.cache = self.de(v, &p),
                "access_log" => site.access_log = self.de(v, &p),
                "tls" => site.tls = self.de(v, &p),
                "limits" => site.limits = self.de(v, &p),
                "https_redirect" => site.https_redirect = self.de(v, &p),
                "hsts" => site.hsts = self.de(v, &p),
                other => self.report.at_key(
                    &p,
                    format!("unknown key `{other}`; expected one of: {SITE_KEYS}"),
                ),
            }
        }
        let mut complete = self.report.clean_since(mark);
        if addresses.is_none() && complete {
            self.report
                .at_key(&sp, "addresses: missing; give at least one host name");
            complete = false;
        }
        if upstream.is_none() && complete {
            self.report
                .at_key(&sp, "upstream: missing; give upstream.address");
            complete = false;
        }
        // What did parse is still checked (addresses claimed twice, the
        // upstream) when another section failed.
        site.upstream = upstream.filter(|u| complete || u.address.is_some() || u.command.is_some());
        let addresses = addresses.unwrap_or_default();
        if complete || !addresses.is_empty() {
            site.addresses = Some(addresses);
        }
        Some(site)
    }
}

impl Reader {
    /// Check a site's host names and claim them; call once the site has
    /// its id.
    fn claim(&mut self, site: &mut SiteDoc, owners: &mut HashMap<String, String>) {
        let Some(list) = site.addresses.take() else {
            return;
        };
        let ap = site.at.child("addresses");
        if list.is_empty() {
            self.report
                .at_value(&ap, "addresses: give at least one host name");
            return;
        }
        let mark = self.report.mark();
        let mut out = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            let p = ap.item(i);
            let addr = raw.trim().trim_end_matches('.').to_ascii_lowercase();
            let domain = addr.strip_prefix("*.").unwrap_or(&addr);
            if let Err(why) = check_host_name(domain) {
                self.report
                    .at_value(&p, format!("addresses: {raw:?} {why}"));
                continue;
            }
            match owners.get(&addr) {
                Some(owner) if *owner == site.id => self
                    .report
                    .at_value(&p, format!("addresses: {raw:?} is listed twice")),
                Some(owner) => self.report.at_value(
                    &p,
                    format!("addresses: {raw:?} is already claimed by site {owner}"),
                ),
                None => {
                    owners.insert(addr.clone(), site.id.clone());
                    out.push(addr);
                }
            }
        }
        if self.report.clean_since(mark) {
            site.addresses = Some(out);
        }
    }
}

/// Two listen addresses that cannot both be bound (same port, and the same
/// IP or one of them the wildcard address).
fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.ip().is_unspecified() && a.is_ipv4() == b.is_ipv4())
            || (b.ip().is_unspecified() && a.is_ipv4() == b.is_ipv4()))
}

fn check_host_name(h: &str) -> Result<(), &'static str> {
    if h.is_empty() {
        return Err("is empty");
    }
    if h.len() > 253 {
        return Err("is longer than 253 characters");
    }
    if h.contains(':') {
        return Err("must be a host name without port (the port is the listener's)");
    }
    if h.contains('*') {
        return Err("may only use `*` as its first label, as in \"*.example.org\"");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty or over-long label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "may contain only letters, digits, '-', '_' and dots (write IDNs in punycode)",
            );
        }
    }
    Ok(())
}
