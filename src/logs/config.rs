//! The logs' part of the configuration: a site's `access_log:` section,
//! validated and built into its [`AccessLog`].

use super::{AccessLog, Format};
use crate::config::Section;
use crate::config::file::AccessLogFile;
use std::path::Path;

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
    let format = match Format::parse(format.as_deref().unwrap_or("standard")) {
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
    };
    if !sec.ok() {
        return None;
    }
    if enabled == Some(false) {
        return Some(None);
    }
    Some(Some(AccessLog::new(log_dir, &file_name, format?)))
}
