//! Logs a tenant sees: each site's access log (`<log_dir>/http/<file>`, in
//! the site's format) and the sites log (`<log_dir>/sites/<site>.log`), where
//! the supervisor and the WAF write `[date] message` lines. All writing goes
//! through one writer thread (`writer.rs`); request threads never block on it.

pub(crate) mod config;
pub(crate) mod escape;
mod template;
mod writer;

#[cfg(test)]
use template::STANDARD;
pub use template::{Format, FormatError, Record};
pub(crate) use writer::{LogFile, flush, reopen};

use chrono::{DateTime, Local};
use std::path::Path;
use std::time::SystemTime;

/// The date in sites-log lines and the standard access log format.
pub(crate) const SITES_DATE: &str = "%d/%b/%Y:%H:%M:%S %z";

/// One site's access log.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    pub(crate) file: LogFile,
    pub(crate) format: Format,
    /// `format.response_fields()`.
    response_fields: Vec<http::HeaderName>,
}

impl AccessLog {
    /// `<log_dir>/http/<file_name>`.
    pub(crate) fn new(log_dir: &Path, file_name: &str, format: Format) -> AccessLog {
        Self::at(log_dir.join("http").join(file_name), format)
    }

    /// The global access log, at `path` (absolute).
    pub(crate) fn at(path: std::path::PathBuf, format: Format) -> AccessLog {
        AccessLog {
            file: LogFile::new(path),
            response_fields: format.response_fields(),
            format,
        }
    }

    /// The response fields its lines show: all a `Record`'s
    /// `response_headers` must hold for the line to be complete.
    pub(crate) fn response_fields(&self) -> &[http::HeaderName] {
        &self.response_fields
    }

    /// Render `r` (on the calling thread; it is cheap) and queue the line.
    pub(crate) fn log(&self, r: &Record) {
        let mut line = Vec::with_capacity(256);
        self.format.render(r, &mut line);
        self.file.append(line);
    }
}

/// One site's part of its account's sites log.
#[derive(Debug, Clone)]
pub(crate) struct SitesLog {
    pub(crate) file: LogFile,
}

impl SitesLog {
    /// `<log_dir>/sites/<site>.log`.
    pub(crate) fn new(log_dir: &Path, site: &str) -> SitesLog {
        SitesLog {
            file: LogFile::new(log_dir.join("sites").join(format!("{site}.log"))),
        }
    }

    /// Write `[date] message`; control characters in `message` are escaped,
    /// so a message can never forge a line.
    pub(crate) fn write(&self, message: &str) {
        self.write_at(SystemTime::now(), message);
    }

    pub(crate) fn write_at(&self, at: SystemTime, message: &str) {
        let mut line = Vec::with_capacity(message.len() + 32);
        sites_line(&mut line, at, message);
        self.file.append(line);
    }
}

fn sites_line(out: &mut Vec<u8>, at: SystemTime, message: &str) {
    let at: DateTime<Local> = at.into();
    out.push(b'[');
    out.extend_from_slice(at.format(SITES_DATE).to_string().as_bytes());
    out.extend_from_slice(b"] ");
    escape::message(out, message);
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
