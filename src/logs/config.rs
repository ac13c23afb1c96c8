//! The logs' part of the configuration: a site's `access_log:` section,
//! validated and built into its [`AccessLog`].

use super::{AccessLog, Format};
use crate::config::file::{AccessLogFile, GlobalAccessLogFile};
use crate::config::{Section, absolute};
use std::path::Path;

/// Validate the top-level `access_log:` (requests no site owns): None on
/// error, Some(None) when there is none.
pub(crate) fn global_access_log(
    file: Option<&GlobalAccessLogFile>,
    sec: &mut Section<'_>,
) -> Option<Option<AccessLog>> {
    let Some(f) = file else {
        return Some(None);
    };
    if f.file.is_empty() || f.file.contains('\0') || f.file.ends_with('/') {
        sec.error(
            &["file"],
            format!("access_log.file: {:?} must be a file path", f.file),
        );
    }
    let format = parse_format(f.format.as_deref(), sec);
    sec.done(|| ())?;
    Some(Some(AccessLog::at(absolute(Path::new(&f.file)), format?)))
}

fn parse_format(format: Option<&str>, sec: &mut Section<'_>) -> Option<Format> {
    match Format::parse(format.unwrap_or("standard")) {
        Ok(f) => Some(f),
        Err(e) => {
            sec.error(
                &["format"],
                format!(
                    "access_log.format: column {} of the format: {}",
                    e.column, e.message
                ),
            );
            None
        }
    }
}

/// Validate a site's `access_log:` section: Some(None) when it is switched
/// off, None on error. The file is `<log_dir>/http/<file>`, by default
/// `<site name>.log`.
pub(crate) fn access_log(
    name: &str,
    log_dir: &Path,
    file: Option<&AccessLogFile>,
    sec: &mut Section<'_>,
) -> Option<Option<AccessLog>> {
    let (enabled, file_name, format) = match file {
        Some(f) => (f.enabled, f.file.clone(), f.format.clone()),
        None => (None, None, None),
    };
    let file_name = file_name.unwrap_or_else(|| format!("{name}.log"));
    if file_name.is_empty()
        || file_name == "."
        || file_name == ".."
        || file_name.contains('/')
        || file_name.contains('\0')
    {
        sec.error(
            &["file"],
            format!("access_log.file: {file_name:?} must be a plain file name; it is created in <log_dir>/http/"),
        );
    }
    let format = parse_format(format.as_deref(), sec);
    if !sec.ok() {
        return None;
    }
    if enabled == Some(false) {
        return Some(None);
    }
    Some(Some(AccessLog::new(log_dir, &file_name, format?)))
}
