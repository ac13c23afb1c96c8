//! The protection profiles, as data: `profiles/*.yaml` name the CRS rule
//! files they load and the CRS variables they set; `modsecurity.conf` and
//! `crs-setup.conf` are the engine base and CRS setup. The repository's
//! `profiles/` directory is compiled in and used unless `waf.profiles_dir`
//! names another directory.
//!
//! A rule set is compiled per distinct (profile, paranoia, threshold, mode,
//! excluded rules, base files) and shared by every site using it, across
//! reloads while its inputs (including the CRS files' size and mtime) stay
//! the same.

use super::engine::EngineError;
use super::modsec::ModSecRuleset;
use super::paths::glob_match;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::{Arc, Mutex, Weak};
use std::time::UNIX_EPOCH;

/// The profile names every edgeward knows (a `profiles_dir` may add more).
pub(crate) const BUILTIN: [&str; 6] =
    ["disabled", "basic", "strong", "full", "wordpress", "drupal"];

const BUILTIN_FILES: [(&str, &str); 6] = [
    ("disabled", include_str!("../../profiles/disabled.yaml")),
    ("basic", include_str!("../../profiles/basic.yaml")),
    ("strong", include_str!("../../profiles/strong.yaml")),
    ("full", include_str!("../../profiles/full.yaml")),
    ("wordpress", include_str!("../../profiles/wordpress.yaml")),
    ("drupal", include_str!("../../profiles/drupal.yaml")),
];
const BUILTIN_BASE: &str = include_str!("../../profiles/modsecurity.conf");
const BUILTIN_SETUP: &str = include_str!("../../profiles/crs-setup.conf");
const BUILTIN_EXTRA: [(&str, &str); 1] = [(
    "wordpress-hardening.conf",
    include_str!("../../profiles/wordpress-hardening.conf"),
)];

/// Rule ids edgeward uses for its own settings and score marker.
pub(crate) const OWN_RULE_IDS: std::ops::RangeInclusive<u32> = 9_990_000..=9_990_999;
const SCORE_RULE: u32 = 9_990_100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// For the reader of the file only.
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, serde_yaml::Value>,
    /// ModSecurity rule files of our own, in the profiles directory.
    #[serde(default)]
    extra_rules: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) name: String,
    pub(crate) rules: Vec<String>,
    pub(crate) settings: Vec<(String, String)>,
    /// Names of rule files from the profiles directory (`extra_rules`).
    pub(crate) extra_rules: Vec<String>,
}

impl Profile {
    /// No rule files: nothing to inspect (like `disabled`).
    pub(crate) fn inspects(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// Every profile plus the base files, from one place.
#[derive(Debug, Clone)]
pub(crate) struct ProfileSet {
    base: String,
    setup: String,
    profiles: BTreeMap<String, Profile>,
    /// The `extra_rules` files the profiles name, by file name.
    extra: BTreeMap<String, String>,
}

fn valid_setting_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn valid_setting_value(s: &str) -> bool {
    s.len() <= 4096
        && !s
            .bytes()
            .any(|b| b < 0x20 || b == b'\'' || b == b'"' || b == b'\\' || b == 0x7f)
}

/// What is wrong inside one profile file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileFileError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("settings.{0}: expected a number or a string")]
    SettingType(String),
    #[error("settings: {0:?} is not a CRS variable name (letters, digits, '_')")]
    SettingName(String),
    #[error("settings.{0}: quotes, backslashes and control characters are not allowed")]
    SettingValue(String),
    #[error("rules: {0:?} must be a CRS rule file name ending in .conf (no directories)")]
    RuleName(String),
    #[error("extra_rules: {0:?} must be a file name ending in .conf in the profiles directory")]
    ExtraRuleName(String),
}

/// Why a profile set cannot be loaded or a profile's rule set built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    Invalid {
        path: PathBuf,
        why: ProfileFileError,
    },
    #[error("{}: profile {name:?} is missing ({name}.yaml)", dir.display())]
    Missing { dir: PathBuf, name: &'static str },
    #[error("CRS rules directory {}: {source}", dir.display())]
    RulesDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {profile}: CRS rule file {pattern} not found in {}", dir.display())]
    RuleFileMissing {
        profile: String,
        pattern: String,
        dir: PathBuf,
    },
    #[error("{}: not a file", .0.display())]
    NotAFile(PathBuf),
    #[error("CRS paths must be UTF-8")]
    NotUtf8,
    #[error("{0}: unusable path")]
    UnusablePath(String),
    #[error("profile {profile}: rule file {file} not found")]
    ExtraRuleMissing { profile: String, file: String },
    #[error("{0}")]
    Engine(#[from] EngineError),
}

fn parse_profile(name: &str, text: &str) -> Result<Profile, ProfileFileError> {
    let f: ProfileFile = serde_yaml::from_str(text)?;
    let mut settings = Vec::new();
    for (k, v) in f.settings {
        let k = k.strip_prefix("tx.").unwrap_or(&k).to_ascii_lowercase();
        let v = match v {
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => u8::from(b).to_string(),
            _ => return Err(ProfileFileError::SettingType(k)),
        };
        if !valid_setting_name(&k) {
            return Err(ProfileFileError::SettingName(k));
        }
        if !valid_setting_value(&v) {
            return Err(ProfileFileError::SettingValue(k));
        }
        settings.push((k, v));
    }
    for r in &f.rules {
        if r.is_empty() || r.contains('/') || r.contains("..") || !r.ends_with(".conf") {
            return Err(ProfileFileError::RuleName(r.clone()));
        }
    }
    for r in &f.extra_rules {
        if r.is_empty() || r.contains('/') || r.starts_with('.') || !r.ends_with(".conf") {
            return Err(ProfileFileError::ExtraRuleName(r.clone()));
        }
    }
    Ok(Profile {
        name: name.to_string(),
        rules: f.rules,
        settings,
        extra_rules: f.extra_rules,
    })
}

impl ProfileSet {
    /// The profiles compiled into this binary (the repository's `profiles/`).
    pub(crate) fn builtin() -> ProfileSet {
        let mut profiles = BTreeMap::new();
        for (name, text) in BUILTIN_FILES {
            let p = parse_profile(name, text).expect("built-in profiles are valid");
            profiles.insert(name.to_string(), p);
        }
        ProfileSet {
            base: BUILTIN_BASE.into(),
            setup: BUILTIN_SETUP.into(),
            profiles,
            extra: BUILTIN_EXTRA
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    /// Every `<name>.yaml` in `dir`, plus its `modsecurity.conf` and
    /// `crs-setup.conf`. The six standard names must all be there.
    pub(crate) fn load(dir: &Path) -> Result<ProfileSet, ProfileError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ProfileError::Read { path, source })
        };
        let dir_error = |source| ProfileError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let base = read("modsecurity.conf")?;
        let setup = read("crs-setup.conf")?;
        let mut profiles = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(dir_error)?;
        for entry in entries {
            let entry = entry.map_err(dir_error)?;
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".yaml")) else {
                continue;
            };
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                continue;
            }
            let text = read(&format!("{name}.yaml"))?;
            let p = parse_profile(name, &text).map_err(|why| ProfileError::Invalid {
                path: entry.path(),
                why,
            })?;
            profiles.insert(name.to_string(), p);
        }
        for name in BUILTIN {
            if !profiles.contains_key(name) {
                return Err(ProfileError::Missing {
                    dir: dir.to_path_buf(),
                    name,
                });
            }
        }
        let mut extra = BTreeMap::new();
        for p in profiles.values() {
            for f in &p.extra_rules {
                if !extra.contains_key(f) {
                    extra.insert(f.clone(), read(f)?);
                }
            }
        }
        Ok(ProfileSet {
            base,
            setup,
            profiles,
            extra,
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.profiles.keys().map(|s| s.as_str()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    Block,
    Detect,
}

/// Everything a compiled rule set depends on.
pub(crate) struct RulesetSpec<'a> {
    pub(crate) set: &'a ProfileSet,
    pub(crate) profile: &'a Profile,
    pub(crate) crs_dir: &'a Path,
    pub(crate) paranoia_level: Option<u8>,
    pub(crate) anomaly_threshold: Option<u32>,
    pub(crate) mode: Mode,
    pub(crate) exclude_rules: &'a [u32],
}

/// The CRS files a profile loads, in CRS numeric order.
pub(crate) fn rule_files(profile: &Profile, crs_dir: &Path) -> Result<Vec<PathBuf>, ProfileError> {
    let rules_dir = crs_dir.join("rules");
    let listing: Vec<String> = match std::fs::read_dir(&rules_dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".conf"))
                .collect();
            v.sort();
            v
        }
        Err(source) => {
            return Err(ProfileError::RulesDir {
                dir: rules_dir,
                source,
            });
        }
    };
    let mut chosen: Vec<&String> = Vec::new();
    for pattern in &profile.rules {
        let wild = pattern.contains(['*', '?']);
        let mut found = false;
        for f in &listing {
            if glob_match(pattern.as_bytes(), f.as_bytes()) {
                found = true;
                if !chosen.contains(&f) {
                    chosen.push(f);
                }
            }
        }
        if !found && !wild {
            return Err(ProfileError::RuleFileMissing {
                profile: profile.name.clone(),
                pattern: pattern.clone(),
                dir: rules_dir,
            });
        }
    }
    // CRS file names sort in their numeric order (REQUEST-9xx before
    // RESPONSE-9xx); the blocking evaluation must come after the attack rules.
    chosen.sort();
    Ok(chosen.into_iter().map(|f| rules_dir.join(f)).collect())
}

/// The ModSecurity configuration text of a rule set, and the cache key that
/// also covers the included files' identity.
pub(crate) fn render(spec: &RulesetSpec<'_>) -> Result<(String, String), ProfileError> {
    let files = rule_files(spec.profile, spec.crs_dir)?;
    let mut text = String::with_capacity(8192);
    let mut key = String::new();
    text.push_str("# base: modsecurity.conf\n");
    text.push_str(&spec.set.base);
    text.push('\n');
    let engine = match spec.mode {
        Mode::Block => "On",
        Mode::Detect => "DetectionOnly",
    };
    let _ = writeln!(text, "SecRuleEngine {engine}");
    text.push_str("# crs-setup.conf\n");
    text.push_str(&spec.set.setup);
    text.push('\n');
    let mut vars: Vec<(String, String)> = spec.profile.settings.clone();
    if let Some(pl) = spec.paranoia_level {
        vars.push(("paranoia_level".into(), pl.to_string()));
    }
    if let Some(t) = spec.anomaly_threshold {
        vars.push(("inbound_anomaly_score_threshold".into(), t.to_string()));
    }
    if !vars.is_empty() {
        let _ = write!(
            text,
            "SecAction \"id:{},phase:1,pass,nolog,t:none",
            OWN_RULE_IDS.start()
        );
        for (k, v) in &vars {
            let _ = write!(text, ",setvar:'tx.{k}={v}'");
        }
        text.push_str("\"\n");
    }
    for f in &files {
        let read_error = |source| ProfileError::Read {
            path: f.clone(),
            source,
        };
        let meta = std::fs::metadata(f).map_err(read_error)?;
        if !meta.is_file() {
            return Err(ProfileError::NotAFile(f.clone()));
        }
        std::fs::File::open(f).map_err(read_error)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let _ = writeln!(key, "{} {} {mtime}", f.display(), meta.len());
        let path = f.to_str().ok_or(ProfileError::NotUtf8)?;
        if path.contains(['"', '\n']) {
            return Err(ProfileError::UnusablePath(path.to_string()));
        }
        let _ = writeln!(text, "Include \"{path}\"");
    }
    for f in &spec.profile.extra_rules {
        let Some(rules) = spec.set.extra.get(f) else {
            return Err(ProfileError::ExtraRuleMissing {
                profile: spec.profile.name.clone(),
                file: f.clone(),
            });
        };
        let _ = writeln!(text, "# {f}");
        text.push_str(rules);
        text.push('\n');
    }
    // The inbound anomaly score, logged once per request that has one (the
    // event log's `anomaly_score`). When REQUEST-949 blocks, its own
    // message carries the score instead.
    let _ = writeln!(
        text,
        "SecRule TX:ANOMALY_SCORE \"@gt 0\" \"id:{SCORE_RULE},phase:2,pass,t:none,log,msg:'Inbound anomaly score %{{tx.anomaly_score}}'\""
    );
    for id in spec.exclude_rules {
        let _ = writeln!(text, "SecRuleRemoveById {id}");
    }
    key.insert_str(0, &text);
    Ok((text, key))
}

static COMPILED: LazyLock<Mutex<HashMap<String, Weak<ModSecRuleset>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Compile (or reuse) the rule set for `spec`.
pub(crate) fn compile(spec: &RulesetSpec<'_>) -> Result<Arc<ModSecRuleset>, ProfileError> {
    let (text, key) = render(spec)?;
    if let Some(set) = COMPILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .and_then(Weak::upgrade)
    {
        return Ok(set);
    }
    let set = ModSecRuleset::compile(&text)?;
    let mut map = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&set));
    Ok(set)
}

/// Whether a rule id is edgeward's own score marker.
pub(crate) fn is_score_rule(id: u32) -> bool {
    id == SCORE_RULE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_nest() {
        let set = ProfileSet::builtin();
        assert!(!set.get("disabled").unwrap().inspects());
        let basic = &set.get("basic").unwrap().rules;
        let strong = &set.get("strong").unwrap().rules;
        let full = &set.get("full").unwrap().rules;
        for r in basic {
            assert!(strong.contains(r), "{r}");
        }
        for r in strong {
            assert!(full.contains(r), "{r}");
        }
        for p in ["wordpress", "drupal"] {
            for r in full {
                assert!(set.get(p).unwrap().rules.contains(r), "{p} {r}");
            }
        }
        assert!(
            set.get("wordpress")
                .unwrap()
                .settings
                .contains(&("crs_exclusions_wordpress".into(), "1".into()))
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(parse_profile("x", "rules: []\nsettings: {a: \"x' ,deny\"}").is_err());
        assert!(parse_profile("x", "rules: [../../etc/passwd.conf]").is_err());
        assert!(parse_profile("x", "rules: []\nnope: 1").is_err());
        assert!(parse_profile("x", "rules: [A.conf]\nsettings: {tx.arg_length: 400}").is_ok());
    }
}
