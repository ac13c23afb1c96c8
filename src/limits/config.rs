//! The limits' part of the configuration: the global `limits:` section and
//! a site's `limits:` (only `max_body_size`), validated into [`Limits`].

use super::Limits;
use crate::config::Section;
use crate::config::file::{LimitsFile, SiteLimitsFile};
use crate::config::units::{ConfDuration, ConfSize};
use std::time::Duration;

/// The largest head Pingora's reader can be told to accept.
const MAX_HEADER_SIZE_CEILING: u64 = 1024 * 1024;
const MIN_HEADER_SIZE: u64 = 1024;
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS_CEILING: u64 = 10_000_000;

/// Validate the global `limits:` section (None: errors, in `sec`).
pub(crate) fn global(file: Option<&LimitsFile>, sec: &mut Section<'_>) -> Option<Limits> {
    let Some(f) = file else {
        return Some(Limits::default());
    };
    let mut out = Limits::default();
    if let Some(d) = timeout(f.header_timeout, "header_timeout", sec) {
        out.header_timeout = d;
    }
    if let Some(d) = timeout(f.body_timeout, "body_timeout", sec) {
        out.body_timeout = d;
    }
    if let Some(d) = timeout(f.keepalive_timeout, "keepalive_timeout", sec) {
        if d.subsec_nanos() > 0 {
            sec.warn(
                &["keepalive_timeout"],
                format_args!(
                    "limits.keepalive_timeout: {d:?} is rounded up to whole seconds ({}s)",
                    super::keepalive_seconds(d)
                ),
            );
        }
        out.keepalive_timeout = d;
    }
    if let Some(ConfSize(n)) = f.max_header_size {
        if (MIN_HEADER_SIZE..=MAX_HEADER_SIZE_CEILING).contains(&n) {
            out.max_header_size = n as usize;
        } else {
            sec.error(
                &["max_header_size"],
                format!(
                    "limits.max_header_size: {n} bytes; give a size from 1KiB to 1MiB (default 32KiB)"
                ),
            );
        }
    }
    if let Some(ConfSize(n)) = f.max_body_size {
        out.max_body_size = n;
    }
    if let Some(n) = f.max_connections {
        if (1..=MAX_CONNECTIONS_CEILING).contains(&n) {
            out.max_connections = n as usize;
        } else {
            sec.error(
                &["max_connections"],
                format!(
                    "limits.max_connections: {n}; give a number from 1 to {MAX_CONNECTIONS_CEILING} (default 20000)"
                ),
            );
        }
    }
    sec.done(|| out)
}

fn timeout(v: Option<ConfDuration>, key: &str, sec: &mut Section<'_>) -> Option<Duration> {
    let ConfDuration(d) = v?;
    if d.is_zero() || d > MAX_TIMEOUT {
        sec.error(
            &[key],
            format!("limits.{key}: {d:?}; give a duration from 1ms to 1h, e.g. 10s"),
        );
        return None;
    }
    Some(d)
}

/// A site's own `limits:` (its `max_body_size`; None when not set). The
/// other limits are per connection, before the site is known: they can only
/// be set globally.
pub(crate) fn site(file: Option<&SiteLimitsFile>, sec: &mut Section<'_>) -> Option<Option<u64>> {
    let max_body_size = file.and_then(|f| f.max_body_size).map(|s| s.0);
    sec.done(|| max_body_size)
}

#[cfg(test)]
mod tests {
    use crate::sites;
    use std::path::Path;

    fn load(text: &str) -> Result<sites::Config, String> {
        sites::parse(Path::new("t.yaml"), text).map_err(|e| e.to_string())
    }

    const SITE: &str = "accounts:\n  a:\n    log_dir: /tmp\n    sites:\n      s:\n        addresses: [a.test]\n        upstream: { address: \"127.0.0.1:1\" }\n";

    #[test]
    fn defaults_and_values() {
        let c = load(&format!("listen: [\"127.0.0.1:1\"]\n{SITE}")).unwrap();
        assert_eq!(c.limits, super::Limits::default());
        let c = load(&format!(
            "listen: [\"127.0.0.1:1\"]\nlimits:\n  header_timeout: 250ms\n  max_header_size: 8KiB\n  max_body_size: 1MiB\n  max_connections: 10\n{SITE}        limits: {{ max_body_size: 10 }}\n"
        ))
        .unwrap();
        assert_eq!(c.limits.header_timeout.as_millis(), 250);
        assert_eq!(c.limits.max_header_size, 8192);
        assert_eq!(c.limits.max_body_size, 1 << 20);
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.sites[0].max_body_size, Some(10));
    }

    #[test]
    fn errors_have_positions() {
        let e = load(&format!(
            "listen: [\"127.0.0.1:1\"]\nlimits:\n  header_timeout: 0s\n  max_header_size: 10\n  max_connections: 0\n{SITE}"
        ))
        .unwrap_err();
        assert!(e.contains("t.yaml:3:19: limits.header_timeout"), "{e}");
        assert!(e.contains("t.yaml:4:20: limits.max_header_size"), "{e}");
        assert!(e.contains("t.yaml:5:20: limits.max_connections"), "{e}");
        let e = load(&format!(
            "listen: [\"127.0.0.1:1\"]\nlimits:\n  bogus: 1\n{SITE}        limits: {{ header_timeout: 1s }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("t.yaml:3:3: limits.bogus: unknown field"), "{e}");
        assert!(
            e.contains("t.yaml:11:19: site a/s: limits.header_timeout: unknown field"),
            "{e}"
        );
    }
}
