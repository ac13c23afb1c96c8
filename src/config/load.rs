//! Load and validate a configuration file. Every error found is collected with
//! its position; a file with any error never produces a `Config`.

use super::file::{
    AccessLogFile, AccountFile, AdminFile, CacheFile, SiteFile, SupervisorFile, UpstreamFile,
    WafFile,
};
use super::position::{Pos, PositionIndex};
use super::runtime::{Config, ProgramSpec, Router, Site, Upstream, UpstreamTarget};
use super::units::ConfDuration;
use super::{ConfigError, ConfigErrors};
use crate::cache::settings::{self as cache_settings, CacheSettings, SiteCache, StorageSettings};
use crate::logs::{AccessLog, Format, LogFile, SitesLog};
use crate::metrics::SiteMetrics;
use crate::net::Cidr;
use crate::waf;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

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
    "accounts",
];

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            scope: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])),
    }
}

/// Validate configuration text; `path` is used in error messages and to name
/// the source of the resulting `Config`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut l = Loader {
        file: path.to_path_buf(),
        index: PositionIndex::default(),
        errors: Vec::new(),
    };
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|loc| (loc.line(), loc.column()))
                .unwrap_or((1, 1));
            l.errors.push(ConfigError {
                file: l.file.clone(),
                line,
                col,
                scope: String::new(),
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            });
            return Err(ConfigErrors(l.errors));
        }
    };
    l.index = PositionIndex::build(text);
    let config = l.build(root);
    if l.errors.is_empty() {
        Ok(config.expect("a config without errors"))
    } else {
        l.errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(l.errors))
    }
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

struct Loader {
    file: PathBuf,
    index: PositionIndex,
    errors: Vec<ConfigError>,
}

fn path_of(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn child(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

fn item(path: &[String], i: usize) -> Vec<String> {
    child(path, &format!("[{i}]"))
}

/// Names that end up in file paths and metric labels.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

impl Loader {
    fn push(&mut self, pos: Pos, scope: &str, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            scope: scope.to_string(),
            message,
        });
    }

    fn err_value(&mut self, path: &[String], scope: &str, message: impl Into<String>) {
        let pos = self.index.value(path);
        self.push(pos, scope, message.into());
    }

    fn err_key(&mut self, path: &[String], scope: &str, message: impl Into<String>) {
        let pos = self.index.key(path);
        self.push(pos, scope, message.into());
    }

    /// Deserialize one section; on error record it (with the exact position
    /// of the offending key or value) and return None.
    fn de<T: DeserializeOwned>(&mut self, v: Value, path: &[String], scope: &str) -> Option<T> {
        // Paths are shown relative to the scope: `upstream.address` for a site.
        let base = match path.first().map(String::as_str) {
            Some("accounts") if path.len() >= 4 && path[2] == "sites" => 4,
            Some("accounts") if path.len() >= 2 => 2,
            _ => 0,
        };
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut full = path.to_vec();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => {
                            full.push(format!("[{index}]"))
                        }
                        serde_path_to_error::Segment::Map { key } => full.push(key.clone()),
                        serde_path_to_error::Segment::Enum { variant } => {
                            full.push(variant.clone())
                        }
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let msg = e.inner().to_string();
                let dotted = full[base.min(full.len())..]
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
                    self.err_key(&full, scope, format!("{dotted}: {msg}"));
                } else {
                    self.err_value(&full, scope, format!("{dotted}: {msg}"));
                }
                None
            }
        }
    }

    fn build(&mut self, root: Value) -> Option<Config> {
        let root = match root {
            Value::Mapping(m) => m,
            Value::Null => Default::default(),
            _ => {
                self.err_value(&[], "", "the configuration must be a mapping of settings");
                return None;
            }
        };

        let mut listen: Option<Vec<String>> = None;
        let mut threads: Option<usize> = None;
        let mut grace: Option<ConfDuration> = None;
        let mut admin: Option<AdminFile> = None;
        let mut default_site: Option<String> = None;
        let mut accounts: Vec<(String, Value)> = Vec::new();
        let mut ok = true;
        let mut listen_given = false;
        let mut trusted: Option<Vec<String>> = None;
        let mut port_range = DEFAULT_PORTS;
        let mut cache = CacheSettings::default();
        let mut waf_file: Option<WafFile> = None;

        for (k, v) in root {
            let Some(key) = k.as_str().map(str::to_string) else {
                self.err_value(&[], "", "configuration keys must be strings");
                ok = false;
                continue;
            };
            let p = path_of(&[&key]);
            match key.as_str() {
                "listen" => {
                    listen_given = true;
                    match self.de::<OneOrMany>(v, &p, "") {
                        Some(OneOrMany::One(s)) => listen = Some(vec![s]),
                        Some(OneOrMany::Many(list)) => listen = Some(list),
                        None => ok = false,
                    }
                }
                "supervisor" => match self.de::<SupervisorFile>(v, &p, "") {
                    Some(sup) => {
                        if let Some(r) = sup.port_range {
                            match parse_port_range(&r) {
                                Ok(range) => port_range = range,
                                Err(why) => {
                                    self.err_value(
                                        &child(&p, "port_range"),
                                        "",
                                        format!("supervisor.port_range: {why}"),
                                    );
                                    ok = false;
                                }
                            }
                        }
                    }
                    None => ok = false,
                },
                "trusted_proxies" => {
                    trusted = self.de(v, &p, "");
                    ok &= trusted.is_some();
                }
                "threads" => {
                    threads = self.de(v, &p, "");
                    ok &= threads.is_some();
                }
                "grace_period" => {
                    grace = self.de(v, &p, "");
                    ok &= grace.is_some();
                }
                "admin" => {
                    admin = self.de(v, &p, "");
                    ok &= admin.is_some();
                }
                "default_site" => {
                    default_site = self.de(v, &p, "");
                    ok &= default_site.is_some();
                }
                "cache" => match self.de::<CacheFile>(v, &p, "") {
                    Some(c) => match self.cache_settings(&c, &p) {
                        Some(c) => cache = c,
                        None => ok = false,
                    },
                    None => ok = false,
                },
                "waf" => {
                    waf_file = self.de::<WafFile>(v, &p, "");
                    ok &= waf_file.is_some();
                }
                "accounts" => match v {
                    Value::Mapping(m) => {
                        for (name, acc) in m {
                            match name.as_str() {
                                Some(n) => accounts.push((n.to_string(), acc)),
                                None => {
                                    self.err_value(&p, "", "account names must be strings");
                                    ok = false;
                                }
                            }
                        }
                    }
                    Value::Null => {}
                    _ => {
                        self.err_value(&p, "", "accounts: expected a mapping of account names");
                        ok = false;
                    }
                },
                other => {
                    self.err_key(
                        &p,
                        "",
                        format!(
                            "unknown key `{other}`; expected one of: {}",
                            TOP_KEYS.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }

        // Global settings.
        let listen = match listen {
            Some(list) if !list.is_empty() => {
                let mut seen: Vec<SocketAddr> = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    if let Ok(sa) = a.parse::<SocketAddr>() {
                        if seen.iter().any(|s| binds_overlap(*s, sa)) {
                            self.err_value(
                                &item(&path_of(&["listen"]), i),
                                "",
                                format!("listen: {a} overlaps an address listed before it"),
                            );
                            ok = false;
                        }
                        seen.push(sa);
                    } else {
                        self.err_value(
                            &item(&path_of(&["listen"]), i),
                            "",
                            format!("listen: {a:?} is not an IP:PORT address (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")"),
                        );
                        ok = false;
                    }
                }
                list
            }
            Some(_) => {
                self.err_value(
                    &path_of(&["listen"]),
                    "",
                    "listen: give at least one address",
                );
                ok = false;
                Vec::new()
            }
            None => {
                if !listen_given {
                    self.err_value(
                        &[],
                        "",
                        "listen: missing; give at least one address, e.g. listen: [\"127.0.0.1:8080\"]",
                    );
                }
                ok = false;
                Vec::new()
            }
        };
        let threads = match threads {
            Some(0) | Some(1025..) => {
                self.err_value(
                    &path_of(&["threads"]),
                    "",
                    "threads: must be between 1 and 1024",
                );
                ok = false;
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let grace_period = grace.map_or(DEFAULT_GRACE, |d| d.0);
        let admin_listen = admin.map(|a| a.listen);
        if let Some(a) = &admin_listen {
            let p = path_of(&["admin", "listen"]);
            match a.parse::<SocketAddr>() {
                Err(_) => {
                    self.err_value(
                        &p,
                        "",
                        format!("admin.listen: {a:?} is not an IP:PORT address"),
                    );
                    ok = false;
                }
                Ok(sa) => {
                    if listen
                        .iter()
                        .filter_map(|l| l.parse::<SocketAddr>().ok())
                        .any(|l| binds_overlap(l, sa))
                    {
                        self.err_value(
                            &p,
                            "",
                            format!("admin.listen: {a} is also a public listen address; the admin listener must never be public"),
                        );
                        ok = false;
                    }
                }
            }
        }

        let mut trusted_proxies = Vec::new();
        for (i, t) in trusted.unwrap_or_default().iter().enumerate() {
            match t.parse::<Cidr>() {
                Ok(c) => trusted_proxies.push(c),
                Err(why) => {
                    self.err_value(
                        &item(&path_of(&["trusted_proxies"]), i),
                        "",
                        format!("trusted_proxies: {why}"),
                    );
                    ok = false;
                }
            }
        }

        let waf = match &waf_file {
            Some(w) => self.waf_settings(w),
            None => Some(waf::Settings::default()),
        };
        ok &= waf.is_some();
        let waf = waf.unwrap_or_default();

        // Accounts and sites.
        let mut sites: Vec<Arc<Site>> = Vec::new();
        let mut router = Router::default();
        let mut owners: HashMap<String, String> = HashMap::new();
        for (account, value) in accounts {
            let ap = path_of(&["accounts", &account]);
            let ascope = format!("account {account}");
            if !valid_name(&account) {
                self.err_key(
                    &ap,
                    &ascope,
                    "account names may contain only letters, digits, '-', '_' and '.' (at most 64)",
                );
                ok = false;
            }
            let Some(acc) = self.de::<AccountFile>(value, &ap, &ascope) else {
                ok = false;
                continue;
            };
            if acc.log_dir.trim().is_empty() {
                self.err_value(
                    &child(&ap, "log_dir"),
                    &ascope,
                    "log_dir: must not be empty",
                );
                ok = false;
            }
            let log_dir = absolute(Path::new(&acc.log_dir));
            for (name, value) in acc.sites {
                let sp = child(&child(&ap, "sites"), &name);
                let id = format!("{account}/{name}");
                let scope = format!("site {id}");
                if !valid_name(&name) {
                    self.err_key(&sp, &scope, "site names may contain only letters, digits, '-', '_' and '.' (at most 64)");
                    ok = false;
                }
                let Some((site, shape_ok)) = self.site_file(value, &sp, &scope) else {
                    ok = false;
                    continue;
                };
                ok &= shape_ok;
                let index = sites.len();
                let addresses = if shape_ok || !site.addresses.is_empty() {
                    self.site_addresses(&site, &sp, &scope, &id, index, &mut owners, &mut router)
                } else {
                    None
                };
                ok &= addresses.is_some();
                let u = &site.upstream;
                let upstream = if shape_ok || u.address.is_some() || u.command.is_some() {
                    self.upstream(u, &child(&sp, "upstream"), &scope)
                } else {
                    None
                };
                let access_log = self.access_log(&site, &sp, &scope, &name, &log_dir);
                let site_cache = self.site_cache(&site, &sp, &scope);
                let sites_log = SitesLog::new(&log_dir, &name);
                let site_waf = self.site_waf(&site, &sp, &scope, &id, &waf, &sites_log);
                let (
                    Some(addresses),
                    Some(upstream),
                    Some(access_log),
                    Some(site_waf),
                    Some(site_cache),
                ) = (addresses, upstream, access_log, site_waf, site_cache)
                else {
                    ok = false;
                    continue;
                };
                sites.push(Arc::new(Site {
                    metrics: SiteMetrics::new(&id),
                    access_log,
                    sites_log,
                    waf: site_waf,
                    id,
                    account: account.clone(),
                    name,
                    addresses,
                    log_dir: log_dir.clone(),
                    upstream,
                    cache: site_cache,
                }));
            }
        }

        let default_site = match default_site {
            None => None,
            Some(id) => match sites.iter().position(|s| s.id == id) {
                Some(i) => Some(i),
                None => {
                    if ok {
                        self.err_value(
                            &path_of(&["default_site"]),
                            "",
                            format!("default_site: no site {id:?} (write it as account/site)"),
                        );
                    }
                    ok = false;
                    None
                }
            },
        };

        if !ok {
            return None;
        }
        Some(Config {
            source: self.file.clone(),
            listen,
            threads,
            grace_period,
            admin_listen,
            sites,
            router,
            default_site,
            trusted_proxies,
            port_range,
            cache,
        })
    }

    /// The site's access log: Some(None) when switched off, None on error.
    fn access_log(
        &mut self,
        site: &SiteFile,
        sp: &[String],
        scope: &str,
        name: &str,
        log_dir: &Path,
    ) -> Option<Option<AccessLog>> {
        let cfg = site.access_log.clone().unwrap_or(AccessLogFile {
            enabled: None,
            file: None,
            format: None,
        });
        let ap = child(sp, "access_log");
        let mut ok = true;
        let file = cfg.file.unwrap_or_else(|| format!("{name}.log"));
        if file.is_empty()
            || file == "."
            || file == ".."
            || file.contains('/')
            || file.contains('\0')
        {
            self.err_value(
                &child(&ap, "file"),
                scope,
                format!("access_log.file: {file:?} must be a plain file name; it is created in <log_dir>/http/"),
            );
            ok = false;
        }
        let format = match Format::parse(cfg.format.as_deref().unwrap_or("standard")) {
            Ok(f) => Some(f),
            Err(e) => {
                self.err_value(
                    &child(&ap, "format"),
                    scope,
                    format!(
                        "access_log.format: column {} of the format: {}",
                        e.column, e.message
                    ),
                );
                ok = false;
                None
            }
        };
        if !ok {
            return None;
        }
        if cfg.enabled == Some(false) {
            return Some(None);
        }
        Some(Some(AccessLog::new(log_dir, &file, format?)))
    }

    /// A site's sections one by one, so that one bad section does not hide
    /// the errors of the others.
    fn site_file(&mut self, value: Value, sp: &[String], scope: &str) -> Option<(SiteFile, bool)> {
        let map = match value {
            Value::Mapping(m) => m,
            _ => {
                self.err_value(
                    sp,
                    scope,
                    "a site must be a mapping with addresses and upstream",
                );
                return None;
            }
        };
        let mut ok = true;
        let mut addresses = None;
        let mut upstream = None;
        let (mut waf, mut cache, mut access_log) = (None, None, None);
        for (k, v) in map {
            let key = k.as_str().unwrap_or("").to_string();
            let p = child(sp, &key);
            match key.as_str() {
                "addresses" => {
                    addresses = self.de::<Vec<String>>(v, &p, scope);
                    ok &= addresses.is_some();
                }
                "upstream" => {
                    upstream = self.de::<UpstreamFile>(v, &p, scope);
                    ok &= upstream.is_some();
                }
                "waf" => {
                    waf = self.de(v, &p, scope);
                    ok &= waf.is_some();
                }
                "cache" => {
                    cache = self.de(v, &p, scope);
                    ok &= cache.is_some();
                }
                "access_log" => {
                    access_log = self.de(v, &p, scope);
                    ok &= access_log.is_some();
                }
                other => {
                    self.err_key(
                        &p,
                        scope,
                        format!("unknown key `{other}`; expected one of: addresses, upstream, waf, cache, access_log"),
                    );
                    ok = false;
                }
            }
        }
        if addresses.is_none() && ok {
            self.err_key(sp, scope, "addresses: missing; give at least one host name");
            ok = false;
        }
        if upstream.is_none() && ok {
            self.err_key(sp, scope, "upstream: missing; give upstream.address");
            ok = false;
        }
        // The caller keeps checking the sections that did parse (addresses
        // claimed twice, unsupported sections) even when another one failed.
        let site = SiteFile {
            addresses: addresses.unwrap_or_default(),
            upstream: upstream.unwrap_or_default(),
            waf,
            cache,
            access_log,
        };
        Some((site, ok))
    }

    #[allow(clippy::too_many_arguments)]
    fn site_addresses(
        &mut self,
        site: &SiteFile,
        sp: &[String],
        scope: &str,
        id: &str,
        index: usize,
        owners: &mut HashMap<String, String>,
        router: &mut Router,
    ) -> Option<Vec<String>> {
        let ap = child(sp, "addresses");
        if site.addresses.is_empty() {
            self.err_value(&ap, scope, "addresses: give at least one host name");
            return None;
        }
        let mut ok = true;
        let mut out = Vec::new();
        for (i, raw) in site.addresses.iter().enumerate() {
            let p = item(&ap, i);
            let addr = raw.trim().trim_end_matches('.').to_ascii_lowercase();
            let (wildcard, domain) = match addr.strip_prefix("*.") {
                Some(d) => (true, d),
                None => (false, addr.as_str()),
            };
            if let Err(why) = check_host_name(domain) {
                self.err_value(&p, scope, format!("addresses: {raw:?} {why}"));
                ok = false;
                continue;
            }
            match owners.get(&addr) {
                Some(owner) if owner == id => {
                    self.err_value(&p, scope, format!("addresses: {raw:?} is listed twice"));
                    ok = false;
                }
                Some(owner) => {
                    self.err_value(
                        &p,
                        scope,
                        format!("addresses: {raw:?} is already claimed by site {owner}"),
                    );
                    ok = false;
                }
                None => {
                    owners.insert(addr.clone(), id.to_string());
                    if wildcard {
                        router.insert_wildcard(domain.to_string(), index);
                    } else {
                        router.insert_exact(domain.to_string(), index);
                    }
                    out.push(addr);
                }
            }
        }
        ok.then_some(out)
    }

    /// The global `waf:` section.
    fn waf_settings(&mut self, w: &WafFile) -> Option<waf::Settings> {
        let p = path_of(&["waf"]);
        let mut ok = true;
        let mut settings = waf::Settings::default();
        if let Some(dir) = &w.crs_dir {
            let dir = absolute(Path::new(dir));
            // Checked here even if no site uses the WAF yet: a wrong path
            // must not wait for the first site to show up.
            if let Err(e) = std::fs::read_dir(dir.join("rules")) {
                self.err_value(
                    &child(&p, "crs_dir"),
                    "",
                    format!(
                        "waf.crs_dir: cannot read the CRS rules in {}: {e}",
                        dir.join("rules").display()
                    ),
                );
                ok = false;
            }
            settings.crs_dir = dir;
        }
        if let Some(dir) = &w.profiles_dir {
            match waf::ProfileSet::load(&absolute(Path::new(dir))) {
                Ok(set) => settings.profiles = Arc::new(set),
                Err(e) => {
                    self.err_value(
                        &child(&p, "profiles_dir"),
                        "",
                        format!("waf.profiles_dir: {e}"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(file) = &w.event_log {
            if file.trim().is_empty() {
                self.err_value(
                    &child(&p, "event_log"),
                    "",
                    "waf.event_log: must not be empty",
                );
                ok = false;
            } else {
                settings.event_log = Some(LogFile::new(absolute(Path::new(file))));
            }
        }
        if let Some(limit) = &w.body_limit {
            let n = limit.0;
            if !(1024..=64 * 1024 * 1024).contains(&n) {
                self.err_value(
                    &child(&p, "body_limit"),
                    "",
                    "waf.body_limit: must be between 1KiB and 64MiB",
                );
                ok = false;
            }
            settings.body_limit = usize::try_from(n).unwrap_or(waf::DEFAULT_BODY_LIMIT);
        }
        ok.then_some(settings)
    }

    /// A site's `waf:` section: Some(None) when nothing is inspected.
    fn site_waf(
        &mut self,
        site: &SiteFile,
        sp: &[String],
        scope: &str,
        id: &str,
        settings: &waf::Settings,
        sites_log: &SitesLog,
    ) -> Option<Option<Arc<waf::SiteWaf>>> {
        let Some(w) = &site.waf else {
            return Some(None);
        };
        let wp = child(sp, "waf");
        let mut ok = true;
        let mode = match w.mode.as_deref() {
            None | Some("block") => waf::Mode::Block,
            Some("detect") => waf::Mode::Detect,
            Some(other) => {
                self.err_value(
                    &child(&wp, "mode"),
                    scope,
                    format!("waf.mode: {other:?} is not a mode; expected block or detect"),
                );
                ok = false;
                waf::Mode::Block
            }
        };
        if let Some(pl) = w.paranoia_level
            && !(1..=4).contains(&pl)
        {
            self.err_value(
                &child(&wp, "paranoia_level"),
                scope,
                "waf.paranoia_level: must be 1, 2, 3 or 4",
            );
            ok = false;
        }
        if w.anomaly_threshold == Some(0) || w.anomaly_threshold.is_some_and(|t| t > 10_000) {
            self.err_value(
                &child(&wp, "anomaly_threshold"),
                scope,
                "waf.anomaly_threshold: must be between 1 and 10000",
            );
            ok = false;
        }
        let mut exclude_rules = Vec::new();
        for (i, r) in w.exclude_rules.iter().flatten().enumerate() {
            match u32::try_from(*r) {
                Ok(id) if id > 0 => exclude_rules.push(id),
                _ => {
                    self.err_value(
                        &item(&child(&wp, "exclude_rules"), i),
                        scope,
                        format!("waf.exclude_rules: {r} is not a rule id"),
                    );
                    ok = false;
                }
            }
        }
        exclude_rules.sort_unstable();
        exclude_rules.dedup();
        let mut exclude_paths = Vec::new();
        for (i, pat) in w.exclude_paths.iter().flatten().enumerate() {
            if !pat.starts_with('/') && !pat.starts_with('*') {
                self.err_value(
                    &item(&child(&wp, "exclude_paths"), i),
                    scope,
                    format!("waf.exclude_paths: {pat:?} must start with '/' (or '*')"),
                );
                ok = false;
            } else {
                exclude_paths.push(pat.clone());
            }
        }
        let mut exclude_ips = Vec::new();
        for (i, c) in w.exclude_ips.iter().flatten().enumerate() {
            match c.parse::<Cidr>() {
                Ok(c) => exclude_ips.push(c),
                Err(why) => {
                    self.err_value(
                        &item(&child(&wp, "exclude_ips"), i),
                        scope,
                        format!("waf.exclude_ips: {why}"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let profile = w.profile.as_deref().unwrap_or("disabled");
        match waf::site_waf(
            settings,
            waf::SiteSpec {
                site: id,
                profile,
                paranoia_level: w.paranoia_level,
                anomaly_threshold: w.anomaly_threshold,
                mode,
                exclude_rules,
                exclude_paths,
                exclude_ips,
                sites_log: sites_log.clone(),
            },
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                self.err_value(&child(&wp, "profile"), scope, format!("waf.{e}"));
                None
            }
        }
    }

    fn upstream(&mut self, u: &UpstreamFile, up: &[String], scope: &str) -> Option<Upstream> {
        let mut ok = true;
        if u.command.is_none() {
            for (key, set) in [
                ("working_dir", u.working_dir.is_some()),
                ("environment", u.environment.is_some()),
                ("idle_timeout", u.idle_timeout.is_some()),
                ("start_timeout", u.start_timeout.is_some()),
                ("user", u.user.is_some()),
                ("group", u.group.is_some()),
                ("max_open_files", u.max_open_files.is_some()),
            ] {
                if set {
                    self.err_key(
                        &child(up, key),
                        scope,
                        format!("upstream.{key}: only valid together with upstream.command"),
                    );
                    ok = false;
                }
            }
        }
        let target = match (&u.address, &u.command) {
            (Some(_), Some(_)) => {
                self.err_value(
                    up,
                    scope,
                    "upstream: give either address or command, not both",
                );
                None
            }
            (None, None) => {
                self.err_value(
                    up,
                    scope,
                    "upstream: give an address (host:port or unix:/path)",
                );
                None
            }
            (Some(a), None) => match parse_upstream_address(a) {
                Ok(t) => Some(t),
                Err(why) => {
                    self.err_value(
                        &child(up, "address"),
                        scope,
                        format!("upstream.address: {why}"),
                    );
                    None
                }
            },
            (None, Some(cmd)) => self.program(u, cmd, up, scope).map(UpstreamTarget::Program),
        };
        let mut timeout = |key: &str, v: Option<ConfDuration>, default: Duration| match v {
            Some(ConfDuration(d)) if d.is_zero() => {
                self.err_value(
                    &child(up, key),
                    scope,
                    format!("upstream.{key}: must be more than 0"),
                );
                ok = false;
                default
            }
            Some(ConfDuration(d)) => d,
            None => default,
        };
        let connect_timeout = timeout(
            "connect_timeout",
            u.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let read_timeout = timeout("read_timeout", u.read_timeout, DEFAULT_IO_TIMEOUT);
        let write_timeout = timeout("write_timeout", u.write_timeout, DEFAULT_IO_TIMEOUT);
        if !ok {
            return None;
        }
        Some(Upstream {
            target: target?,
            connect_timeout,
            read_timeout,
            write_timeout,
        })
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

const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range such as \"20000-29999\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

const RESERVED_ENV: &[&str] = &["IP", "PORT", "HOST"];

impl Loader {
    fn program(
        &mut self,
        u: &UpstreamFile,
        cmd: &str,
        up: &[String],
        scope: &str,
    ) -> Option<Arc<ProgramSpec>> {
        let mut ok = true;
        if cmd.trim().is_empty() || cmd.contains('\0') {
            self.err_value(
                &child(up, "command"),
                scope,
                "upstream.command: must not be empty",
            );
            ok = false;
        }
        let working_dir = match u.working_dir.as_deref() {
            Some(d) if !d.trim().is_empty() && !d.contains('\0') => absolute(Path::new(d)),
            Some(_) => {
                self.err_value(
                    &child(up, "working_dir"),
                    scope,
                    "upstream.working_dir: must not be empty",
                );
                ok = false;
                PathBuf::new()
            }
            None => {
                self.err_key(
                    up,
                    scope,
                    "upstream.working_dir: required with upstream.command",
                );
                ok = false;
                PathBuf::new()
            }
        };
        let environment = u.environment.clone().unwrap_or_default();
        for k in environment.keys() {
            let p = child(&child(up, "environment"), k);
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err_key(
                    &p,
                    scope,
                    format!("upstream.environment: {k:?} is not a variable name"),
                );
                ok = false;
            } else if RESERVED_ENV.contains(&k.as_str()) {
                self.err_key(
                    &p,
                    scope,
                    format!("upstream.environment: {k} is set by edgeward (the address the program must listen on)"),
                );
                ok = false;
            }
        }
        for (k, v) in &environment {
            if v.contains('\0') {
                self.err_value(
                    &child(&child(up, "environment"), k),
                    scope,
                    "upstream.environment: values must not contain NUL",
                );
                ok = false;
            }
        }
        let start_timeout = match u.start_timeout {
            Some(ConfDuration(d)) if d.is_zero() => {
                self.err_value(
                    &child(up, "start_timeout"),
                    scope,
                    "upstream.start_timeout: must be more than 0",
                );
                ok = false;
                d
            }
            Some(ConfDuration(d)) => d,
            None => DEFAULT_START_TIMEOUT,
        };
        let user = match (&u.user, &u.group) {
            (None, None) => None,
            (None, Some(_)) => {
                self.err_key(
                    &child(up, "group"),
                    scope,
                    "upstream.group: only valid together with upstream.user",
                );
                ok = false;
                None
            }
            (Some(name), group) => match crate::supervisor::resolve_user(name, group.as_deref()) {
                Ok(r) => Some(r),
                Err(why) => {
                    let key = crate::supervisor::UserError::key(&why);
                    self.err_value(&child(up, key), scope, format!("upstream.{key}: {why}"));
                    ok = false;
                    None
                }
            },
        };
        if u.max_open_files == Some(0) {
            self.err_value(
                &child(up, "max_open_files"),
                scope,
                "upstream.max_open_files: must be more than 0",
            );
            ok = false;
        }
        ok.then(|| {
            Arc::new(ProgramSpec {
                command: cmd.to_string(),
                working_dir,
                environment,
                idle_timeout: u.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
                start_timeout,
                user,
                max_open_files: u.max_open_files,
            })
        })
    }
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

/// `host:port`, `[v6]:port` or `unix:/absolute/path`. Host names are
/// resolved now, when the configuration is loaded.
fn parse_upstream_address(a: &str) -> Result<UpstreamTarget, String> {
    if let Some(path) = a.strip_prefix("unix:") {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(format!("{a:?}: a Unix socket path must be absolute"));
        }
        return Ok(UpstreamTarget::Unix(p.to_path_buf()));
    }
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(UpstreamTarget::Tcp {
            addr,
            authority: a.to_string(),
        });
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(format!("{a:?} has no port; write host:port or unix:/path"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{a:?} is not host:port or unix:/path"));
    }
    let addrs: Vec<SocketAddr> = (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    // Prefer IPv4 like most resolvers' defaults for loopback names.
    let addr = addrs
        .iter()
        .find(|s| s.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))?;
    Ok(UpstreamTarget::Tcp {
        addr,
        authority: a.to_string(),
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

// ------------------------------------------------------------------ cache

impl Loader {
    /// The global `cache:` section.
    fn cache_settings(&mut self, c: &CacheFile, p: &[String]) -> Option<CacheSettings> {
        let mut ok = true;
        let mut out = CacheSettings::default();
        let storage = c.storage.as_deref().unwrap_or("memory");
        match storage {
            "memory" => {
                if c.redis.is_some() {
                    self.err_key(
                        &child(p, "redis"),
                        "",
                        "cache.redis: only used with `storage: redis`",
                    );
                    ok = false;
                }
                let max_size = c
                    .memory
                    .as_ref()
                    .and_then(|m| m.max_size)
                    .map_or(cache_settings::DEFAULT_MAX_SIZE, |s| s.0);
                if max_size == 0 {
                    self.err_value(
                        &child(&child(p, "memory"), "max_size"),
                        "",
                        "cache.memory.max_size: must be more than 0",
                    );
                    ok = false;
                }
                out.storage = StorageSettings::Memory { max_size };
            }
            "redis" => {
                if c.memory.is_some() {
                    self.err_key(
                        &child(p, "memory"),
                        "",
                        "cache.memory: only used with `storage: memory`",
                    );
                    ok = false;
                }
                match &c.redis {
                    None => {
                        self.err_value(
                            &child(p, "storage"),
                            "",
                            "cache.redis: required with `storage: redis` (give at least redis.url)",
                        );
                        ok = false;
                    }
                    Some(r) => {
                        let rp = child(p, "redis");
                        let url_ok = (r.url.starts_with("redis://")
                            || r.url.starts_with("rediss://")
                            || r.url.starts_with("redis+unix://")
                            || r.url.starts_with("unix://"))
                            && redis::Client::open(r.url.as_str()).is_ok();
                        if !url_ok {
                            self.err_value(
                                &child(&rp, "url"),
                                "",
                                format!(
                                    "cache.redis.url: {:?} is not a Redis URL (e.g. \"redis://127.0.0.1:6379/0\")",
                                    r.url
                                ),
                            );
                            ok = false;
                        }
                        let timeout = r
                            .timeout
                            .map_or(cache_settings::DEFAULT_REDIS_TIMEOUT, |d| d.0);
                        if timeout.is_zero() {
                            self.err_value(
                                &child(&rp, "timeout"),
                                "",
                                "cache.redis.timeout: must be more than 0",
                            );
                            ok = false;
                        }
                        out.storage = StorageSettings::Redis {
                            url: r.url.clone(),
                            key_prefix: r
                                .key_prefix
                                .clone()
                                .unwrap_or_else(|| cache_settings::DEFAULT_KEY_PREFIX.to_string()),
                            timeout,
                            local_size: r
                                .local_size
                                .map_or(cache_settings::DEFAULT_REDIS_LOCAL_SIZE, |s| s.0),
                        };
                    }
                }
            }
            other => {
                self.err_value(
                    &child(p, "storage"),
                    "",
                    format!("cache.storage: {other:?} is not a storage; expected memory or redis"),
                );
                ok = false;
            }
        }
        if let Some(m) = c.max_object_size {
            if m.0 == 0 {
                self.err_value(
                    &child(p, "max_object_size"),
                    "",
                    "cache.max_object_size: must be more than 0",
                );
                ok = false;
            }
            out.max_object_size = m.0;
        }
        if let Some(list) = &c.purge_allow {
            out.purge_allow.clear();
            for (i, t) in list.iter().enumerate() {
                match t.parse::<Cidr>() {
                    Ok(c) => out.purge_allow.push(c),
                    Err(why) => {
                        self.err_value(
                            &item(&child(p, "purge_allow"), i),
                            "",
                            format!("cache.purge_allow: {why}"),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(out)
    }

    /// A site's `cache:` section (None on error).
    fn site_cache(&mut self, site: &SiteFile, sp: &[String], scope: &str) -> Option<SiteCache> {
        let Some(c) = &site.cache else {
            return Some(SiteCache::default());
        };
        let cp = child(sp, "cache");
        let mut ok = true;
        if let Some(ttl) = c.ttl
            && ttl.0.is_zero()
        {
            self.err_value(
                &child(&cp, "ttl"),
                scope,
                "cache.ttl: must be more than 0 (leave it out to use only the origin's freshness)",
            );
            ok = false;
        }
        let content_types = match &c.content_types {
            None => None,
            Some(list) if list.is_empty() => {
                self.err_value(
                    &child(&cp, "content_types"),
                    scope,
                    "cache.content_types: give at least one media type (e.g. \"text/*\"), or leave the key out to store any",
                );
                ok = false;
                None
            }
            Some(list) => {
                let mut out = Vec::new();
                for (i, t) in list.iter().enumerate() {
                    let t = t.trim().to_ascii_lowercase();
                    if cache_settings::valid_media_range(&t) {
                        out.push(t);
                    } else {
                        self.err_value(
                            &item(&child(&cp, "content_types"), i),
                            scope,
                            format!("cache.content_types: {t:?} is not a media type such as \"text/html\" or \"text/*\""),
                        );
                        ok = false;
                    }
                }
                Some(out)
            }
        };
        ok.then(|| SiteCache {
            enabled: c.enabled.unwrap_or(false),
            ttl: c.ttl.map(|d| d.0),
            content_types,
            store_set_cookie: c.store_set_cookie.unwrap_or(false),
        })
    }
}
