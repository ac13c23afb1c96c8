//! The WAF's part of the configuration: the global `waf:` section and a
//! site's `waf:`, validated and built (a site's rule set is compiled here,
//! off the request path, when the configuration is loaded).

use super::{DEFAULT_BODY_LIMIT, Mode, ProfileSet, Settings, SiteSpec, SiteWaf, site_waf};
use crate::config::file::{SiteWafFile, WafFile};
use crate::config::{Cidr, Section, absolute};
use crate::logs::{LogFile, SitesLog};
use std::path::Path;
use std::sync::Arc;

/// Validate the global `waf:` section (None: not in the file).
pub(crate) fn global(file: Option<&WafFile>, sec: &mut Section<'_>) -> Option<Settings> {
    let mut settings = Settings::default();
    let Some(w) = file else {
        return Some(settings);
    };
    if let Some(dir) = &w.crs_dir {
        let dir = absolute(Path::new(dir));
        // Checked here even if no site uses the WAF yet: a wrong path
        // must not wait for the first site to show up.
        if let Err(e) = std::fs::read_dir(dir.join("rules")) {
            sec.error(
                &["crs_dir"],
                format!(
                    "waf.crs_dir: cannot read the CRS rules in {}: {e}",
                    dir.join("rules").display()
                ),
            );
        }
        settings.crs_dir = dir;
    }
    if let Some(dir) = &w.profiles_dir {
        match ProfileSet::load(&absolute(Path::new(dir))) {
            Ok(set) => settings.profiles = Arc::new(set),
            Err(e) => sec.error(&["profiles_dir"], format!("waf.profiles_dir: {e}")),
        }
    }
    if let Some(file) = &w.event_log {
        if file.trim().is_empty() {
            sec.error(&["event_log"], "waf.event_log: must not be empty");
        } else {
            settings.event_log = Some(LogFile::new(absolute(Path::new(file))));
        }
    }
    if let Some(limit) = &w.body_limit {
        let n = limit.0;
        if !(1024..=64 * 1024 * 1024).contains(&n) {
            sec.error(
                &["body_limit"],
                "waf.body_limit: must be between 1KiB and 64MiB",
            );
        }
        settings.body_limit = usize::try_from(n).unwrap_or(DEFAULT_BODY_LIMIT);
    }
    sec.done(|| settings)
}

/// Validate site `id`'s `waf:` section and build its WAF: Some(None) when
/// nothing is inspected (no section, or the `disabled` profile).
pub(crate) fn site(
    id: &str,
    file: Option<&SiteWafFile>,
    settings: &Settings,
    sites_log: &SitesLog,
    sec: &mut Section<'_>,
) -> Option<Option<Arc<SiteWaf>>> {
    let Some(w) = file else {
        return Some(None);
    };
    let mode = match w.mode.as_deref() {
        None | Some("block") => Mode::Block,
        Some("detect") => Mode::Detect,
        Some(other) => {
            sec.error(
                &["mode"],
                format!("waf.mode: {other:?} is not a mode; expected block or detect"),
            );
            Mode::Block
        }
    };
    if let Some(pl) = w.paranoia_level
        && !(1..=4).contains(&pl)
    {
        sec.error(
            &["paranoia_level"],
            "waf.paranoia_level: must be 1, 2, 3 or 4",
        );
    }
    if w.anomaly_threshold == Some(0) || w.anomaly_threshold.is_some_and(|t| t > 10_000) {
        sec.error(
            &["anomaly_threshold"],
            "waf.anomaly_threshold: must be between 1 and 10000",
        );
    }
    let mut exclude_rules = Vec::new();
    for (i, r) in w.exclude_rules.iter().flatten().enumerate() {
        match u32::try_from(*r) {
            Ok(id) if id > 0 => exclude_rules.push(id),
            _ => sec.error_item(
                &["exclude_rules"],
                i,
                format!("waf.exclude_rules: {r} is not a rule id"),
            ),
        }
    }
    exclude_rules.sort_unstable();
    exclude_rules.dedup();
    let mut exclude_paths = Vec::new();
    for (i, pat) in w.exclude_paths.iter().flatten().enumerate() {
        if !pat.starts_with('/') && !pat.starts_with('*') {
            sec.error_item(
                &["exclude_paths"],
                i,
                format!("waf.exclude_paths: {pat:?} must start with '/' (or '*')"),
            );
        } else {
            exclude_paths.push(pat.clone());
        }
    }
    let mut exclude_ips = Vec::new();
    for (i, c) in w.exclude_ips.iter().flatten().enumerate() {
        match c.parse::<Cidr>() {
            Ok(c) => exclude_ips.push(c),
            Err(why) => sec.error_item(&["exclude_ips"], i, format!("waf.exclude_ips: {why}")),
        }
    }
    if !sec.ok() {
        return None;
    }
    let profile = w.profile.as_deref().unwrap_or("disabled");
    match site_waf(
        settings,
        SiteSpec {
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
            sec.error(&["profile"], format!("waf.{e}"));
            None
        }
    }
}
