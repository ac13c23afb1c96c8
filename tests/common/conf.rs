//! The one way tests write edgeward's configuration: a builder that renders
//! the YAML file.
//!
//! ```text
//! Conf::new()                                  // listen, threads: 2, admin
//!     .set("grace_period", "10s")              // a top-level key, raw YAML value
//!     .cache("storage", "memory")              // a line under `cache:` (also `waf`)
//!     .site("blog", |s| {                      // in account `alice` unless
//!         s.address("blog.test")               // `.account(..)` said otherwise
//!             .upstream(&origin.address())
//!             .upstream_opt("read_timeout", "1s")
//!             .cache("enabled: true")          // site sections: the inside of a flow map
//!     })
//! ```
//!
//! The rendered text keeps three placeholders that `Edgeward::start` fills in
//! once it has picked its ports and temp dir: `{listen}`, `{admin}`, `{dir}`
//! (tests may use `{dir}` in their own values too). Setting a key that is
//! already set replaces its value, in place.
//!
//! Configurations that test the loader itself (broken YAML, error positions
//! in a hand-written layout) stay literal text in their tests.

use std::fmt;
use std::path::Path;

/// A YAML mapping written in order; setting a key again replaces its value.
type Entries = Vec<(String, String)>;

fn put(entries: &mut Entries, key: &str, value: String) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = value,
        None => entries.push((key.to_string(), value)),
    }
}

/// `s` as a YAML double-quoted scalar (JSON strings are valid YAML).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[derive(Clone, Debug)]
pub(crate) struct Conf {
    admin: bool,
    globals: Entries,
    sections: Vec<(String, Entries)>,
    accounts: Vec<Account>,
}

#[derive(Clone, Debug)]
struct Account {
    name: String,
    log_dir: String,
    sites: Vec<Site>,
}

/// One site; see [`Conf::site`].
#[derive(Clone, Debug)]
pub(crate) struct Site {
    name: String,
    addresses: Vec<String>,
    upstream: Entries,
    keys: Entries,
}

impl Default for Conf {
    fn default() -> Self {
        Self::new()
    }
}

impl Conf {
    /// `listen` on the test's port, `threads: 2`, the admin listener on its
    /// port, no account yet.
    pub(crate) fn new() -> Conf {
        Conf {
            admin: true,
            globals: vec![("threads".into(), "2".into())],
            sections: Vec::new(),
            accounts: Vec::new(),
        }
    }

    /// Without the `admin` listener.
    pub(crate) fn no_admin(mut self) -> Conf {
        self.admin = false;
        self
    }

    /// A top-level key with a one-line YAML value, written as it is:
    /// `.set("default_site", "alice/shop")`,
    /// `.set("trusted_proxies", r#"["127.0.0.0/8"]"#)`.
    pub(crate) fn set(mut self, key: &str, value: &str) -> Conf {
        put(&mut self.globals, key, value.to_string());
        self
    }

    /// A line `key: value` in the top-level block `section`.
    pub(crate) fn set_in(mut self, section: &str, key: &str, value: &str) -> Conf {
        let i = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        put(&mut self.sections[i].1, key, value.to_string());
        self
    }

    /// A line of the global `cache:` section.
    pub(crate) fn cache(self, key: &str, value: &str) -> Conf {
        self.set_in("cache", key, value)
    }

    /// A line of the global `waf:` section.
    pub(crate) fn waf(self, key: &str, value: &str) -> Conf {
        self.set_in("waf", key, value)
    }

    /// Start account `name` (log_dir `{dir}/name`); the sites added next go
    /// there. Without it, sites go to account `alice`.
    pub(crate) fn account(mut self, name: &str) -> Conf {
        self.accounts.push(Account {
            name: name.to_string(),
            log_dir: format!("{{dir}}/{name}"),
            sites: Vec::new(),
        });
        self
    }

    /// Add site `name` to the last account started, shaped by `f`.
    pub(crate) fn site(mut self, name: &str, f: impl FnOnce(Site) -> Site) -> Conf {
        if self.accounts.is_empty() {
            self = self.account("alice");
        }
        let site = f(Site {
            name: name.to_string(),
            addresses: Vec::new(),
            upstream: Vec::new(),
            keys: Vec::new(),
        });
        self.accounts
            .last_mut()
            .expect("an account")
            .sites
            .push(site);
        self
    }

    /// Change site `name` (whichever account it is in) with `f`.
    pub(crate) fn edit_site(mut self, name: &str, f: impl FnOnce(Site) -> Site) -> Conf {
        let site = self
            .accounts
            .iter_mut()
            .flat_map(|a| a.sites.iter_mut())
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name} to edit"));
        *site = f(site.clone());
        self
    }

    /// Without site `name`.
    pub(crate) fn remove_site(mut self, name: &str) -> Conf {
        for a in &mut self.accounts {
            a.sites.retain(|s| s.name != name);
        }
        self
    }

    /// The file with its placeholders filled in.
    pub(crate) fn render(&self, listen: &str, admin: &str, dir: &Path) -> String {
        fill(&self.to_string(), listen, admin, dir)
    }

    /// 1-based line of the first line of the rendered file containing
    /// `needle` (placeholders span no line, so any rendering has the same
    /// layout).
    pub(crate) fn line_of(&self, needle: &str) -> usize {
        position_of(&self.to_string(), needle).0
    }
}

/// Fill the placeholders `{listen}`, `{admin}` and `{dir}` of a file.
pub(crate) fn fill(text: &str, listen: &str, admin: &str, dir: &Path) -> String {
    text.replace("{listen}", listen)
        .replace("{admin}", admin)
        .replace("{dir}", &dir.display().to_string())
}

/// 1-based (line, column) of the first `needle` in `text`, as edgeward
/// reports positions.
pub(crate) fn position_of(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
}

impl Site {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// One more host name.
    pub(crate) fn address(mut self, host: &str) -> Site {
        self.addresses.push(host.to_string());
        self
    }

    /// `upstream.address`.
    pub(crate) fn upstream(self, address: &str) -> Site {
        self.upstream_opt("address", &quote(address))
    }

    /// `upstream.command` and `upstream.working_dir`.
    pub(crate) fn command(self, command: &str, working_dir: &Path) -> Site {
        self.upstream_opt("command", &quote(command))
            .upstream_opt("working_dir", &quote(&working_dir.display().to_string()))
    }

    /// Any other `upstream` setting, its value written as it is:
    /// `.upstream_opt("read_timeout", "1s")`,
    /// `.upstream_opt("environment", "{ CUSTOM: \"yes\" }")`.
    pub(crate) fn upstream_opt(mut self, key: &str, value: &str) -> Site {
        put(&mut self.upstream, key, value.to_string());
        self
    }

    /// `cache: { <flow> }`, e.g. `.cache("enabled: true, ttl: 1s")`.
    pub(crate) fn cache(self, flow: &str) -> Site {
        self.set("cache", &format!("{{ {flow} }}"))
    }

    /// `waf: { <flow> }`, e.g. `.waf("profile: strong, mode: detect")`.
    pub(crate) fn waf(self, flow: &str) -> Site {
        self.set("waf", &format!("{{ {flow} }}"))
    }

    /// `access_log: { <flow> }`, e.g. `.access_log("format: json")`.
    pub(crate) fn access_log(self, flow: &str) -> Site {
        self.set("access_log", &format!("{{ {flow} }}"))
    }

    /// Any other site key, its value written as it is.
    pub(crate) fn set(mut self, key: &str, value: &str) -> Site {
        put(&mut self.keys, key, value.to_string());
        self
    }
}

fn flow(entries: &Entries) -> String {
    let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", inner.join(", "))
}

impl fmt::Display for Conf {
    /// The file, placeholders unfilled.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "listen: [\"{{listen}}\"]")?;
        if self.admin {
            writeln!(f, "admin: {{ listen: \"{{admin}}\" }}")?;
        }
        for (k, v) in &self.globals {
            writeln!(f, "{k}: {v}")?;
        }
        for (section, entries) in &self.sections {
            writeln!(f, "{section}:")?;
            for (k, v) in entries {
                writeln!(f, "  {k}: {v}")?;
            }
        }
        if self.accounts.is_empty() {
            return writeln!(f, "accounts: {{}}");
        }
        writeln!(f, "accounts:")?;
        for a in &self.accounts {
            writeln!(f, "  {}:", a.name)?;
            writeln!(f, "    log_dir: {}", quote(&a.log_dir))?;
            if a.sites.is_empty() {
                writeln!(f, "    sites: {{}}")?;
                continue;
            }
            writeln!(f, "    sites:")?;
            for s in &a.sites {
                writeln!(f, "      {}:", s.name)?;
                let hosts: Vec<String> = s.addresses.iter().map(|h| quote(h)).collect();
                writeln!(f, "        addresses: [{}]", hosts.join(", "))?;
                if !s.upstream.is_empty() {
                    writeln!(f, "        upstream: {}", flow(&s.upstream))?;
                }
                for (k, v) in &s.keys {
                    writeln!(f, "        {k}: {v}")?;
                }
            }
        }
        Ok(())
    }
}
