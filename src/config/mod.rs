//! Configuration: the YAML file (`file.rs`), its validation into the runtime
//! types (`load.rs` → `runtime.rs`), and the errors an operator sees.

mod file;
mod load;
mod position;
mod runtime;
pub mod units;

pub use load::{load, parse};
pub use runtime::{
    Config, ProgramSpec, Router, RunAs, Site, Upstream, UpstreamTarget, normalize_host,
};

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position (e.g. the file is unreadable).
    pub line: usize,
    pub col: usize,
    /// `account alice`, `site alice/blog`, or empty for global settings.
    pub scope: String,
    pub message: String,
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
pub struct ConfigErrors(pub Vec<ConfigError>);

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
