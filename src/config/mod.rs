//! Configuration as plain data. The file as operators write it
//! (`file.rs`), read into a validated [`Document`] (`parse.rs`) with every
//! error placed at its line and column (`report.rs`). This module imports
//! none of the capabilities: each of them validates its own section from
//! here and builds its runtime part; `crate::sites` assembles a site.

mod cidr;
mod document;
pub(crate) mod file;
mod parse;
mod position;
mod report;
pub(crate) mod units;

pub(crate) use cidr::{Cidr, canonical};
pub(crate) use document::{ACCESS_LOG, CACHE, Document, LIMITS, SUPERVISOR, SiteDoc, TLS, WAF};
pub(crate) use parse::{parse, read};
pub(crate) use report::{Place, Report, Section};

use std::fmt;
use std::path::{Path, PathBuf};

/// `p` made absolute against the working directory (paths in the file are
/// relative to where edgeward was started, as nginx's prefix-less paths).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// One thing wrong with a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub(crate) file: PathBuf,
    /// 1-based; 0 when the error has no position (e.g. the file is unreadable).
    pub(crate) line: usize,
    pub(crate) col: usize,
    /// `account alice`, `site alice/blog`, or empty for global settings.
    pub(crate) scope: String,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        f.write_str(": ")?;
        if !self.scope.is_empty() {
            write!(f, "{}: ", self.scope)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
