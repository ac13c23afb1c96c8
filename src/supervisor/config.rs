//! The supervisor's part of the configuration: the global `supervisor:`
//! section (the ports handed to programs) and a site's `upstream.command`
//! with its settings, validated and built into a [`ProgramSpec`].

use crate::config::file::{SupervisorFile, UpstreamFile};
use crate::config::units::ConfDuration;
use crate::config::{Section, absolute};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Ports handed to programs when `supervisor.port_range` is not set.
pub(crate) const DEFAULT_PORTS: RangeInclusive<u16> = 20000..=29999;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Variables edgeward sets itself: the address the program must listen on.
const RESERVED_ENV: &[&str] = &["IP", "PORT", "HOST"];

/// The global `supervisor:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Ports handed to programs.
    pub(crate) port_range: RangeInclusive<u16>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            port_range: DEFAULT_PORTS,
        }
    }
}

/// A supervised upstream program, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProgramSpec {
    pub(crate) command: String,
    pub(crate) working_dir: PathBuf,
    /// The site's own variables; IP, PORT, HOST, PATH, HOME and LANG are
    /// added by the supervisor.
    pub(crate) environment: BTreeMap<String, String>,
    /// Zero: never stopped for idleness.
    pub(crate) idle_timeout: Duration,
    pub(crate) start_timeout: Duration,
    /// Run as this user (resolved when the configuration loads).
    pub(crate) user: Option<RunAs>,
    /// RLIMIT_NOFILE (soft and hard) for the program.
    pub(crate) max_open_files: Option<u64>,
}

/// The identity a program runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups of the user.
    pub(crate) groups: Vec<u32>,
}

/// Why a `port_range` is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a port range such as \"20000-29999\"")]
pub(crate) struct PortRangeError(String);

/// Validate the global `supervisor:` section.
pub(crate) fn settings(file: Option<&SupervisorFile>, sec: &mut Section<'_>) -> Option<Settings> {
    let mut out = Settings::default();
    if let Some(r) = file.and_then(|f| f.port_range.as_deref()) {
        match parse_port_range(r) {
            Ok(range) => out.port_range = range,
            Err(why) => sec.error(&["port_range"], format!("supervisor.port_range: {why}")),
        }
    }
    sec.done(|| out)
}

fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, PortRangeError> {
    let bad = || PortRangeError(s.to_string());
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

/// Validate `upstream.command` and the settings that go with it; `sec` is
/// the site's `upstream:` section.
pub(crate) fn program_from_config(
    u: &UpstreamFile,
    cmd: &str,
    sec: &mut Section<'_>,
) -> Option<Arc<ProgramSpec>> {
    if cmd.trim().is_empty() || cmd.contains('\0') {
        sec.error(&["command"], "upstream.command: must not be empty");
    }
    let working_dir = match u.working_dir.as_deref() {
        Some(d) if !d.trim().is_empty() && !d.contains('\0') => absolute(Path::new(d)),
        Some(_) => {
            sec.error(&["working_dir"], "upstream.working_dir: must not be empty");
            PathBuf::new()
        }
        None => {
            sec.error_key(&[], "upstream.working_dir: required with upstream.command");
            PathBuf::new()
        }
    };
    let environment = u.environment.clone().unwrap_or_default();
    for (k, v) in &environment {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            sec.error_key(
                &["environment", k],
                format!("upstream.environment: {k:?} is not a variable name"),
            );
        } else if RESERVED_ENV.contains(&k.as_str()) {
            sec.error_key(
                &["environment", k],
                format!("upstream.environment: {k} is set by edgeward (the address the program must listen on)"),
            );
        }
        if v.contains('\0') {
            sec.error(
                &["environment", k],
                "upstream.environment: values must not contain NUL",
            );
        }
    }
    let start_timeout = match u.start_timeout {
        Some(ConfDuration(d)) if d.is_zero() => {
            sec.error(
                &["start_timeout"],
                "upstream.start_timeout: must be more than 0",
            );
            d
        }
        Some(ConfDuration(d)) => d,
        None => DEFAULT_START_TIMEOUT,
    };
    let user = match (&u.user, &u.group) {
        (None, None) => None,
        (None, Some(_)) => {
            sec.error_key(
                &["group"],
                "upstream.group: only valid together with upstream.user",
            );
            None
        }
        (Some(name), group) => match super::resolve_user(name, group.as_deref()) {
            Ok(r) => Some(r),
            Err(why) => {
                let key = why.key();
                sec.error(&[key], format!("upstream.{key}: {why}"));
                None
            }
        },
    };
    if u.max_open_files == Some(0) {
        sec.error(
            &["max_open_files"],
            "upstream.max_open_files: must be more than 0",
        );
    }
    sec.done(|| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("20000-20010"), Ok(20000..=20010));
        assert_eq!(parse_port_range(" 1 - 2 "), Ok(1..=2));
        for bad in ["0-10", "10-9", "a-b", "20000", "-"] {
            assert_eq!(
                parse_port_range(bad).unwrap_err().to_string(),
                format!("{bad:?} is not a port range such as \"20000-29999\""),
            );
        }
    }
}
