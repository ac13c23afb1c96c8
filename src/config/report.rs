//! Everything found wrong while reading a configuration, each with the
//! position (line:col) of the key or value it is about. The file layer
//! (`parse.rs`) and every capability's validator write into one `Report`,
//! so `edgeward check` shows every error of a file at once.

use super::position::PositionIndex;
use super::{ConfigError, ConfigErrors};
use std::path::{Path, PathBuf};

/// The errors of one configuration file, in the order they were found.
#[derive(Debug)]
pub(crate) struct Report {
    file: PathBuf,
    index: PositionIndex,
    errors: Vec<ConfigError>,
}

/// Where a section sits in the file: its YAML path (map keys, `[i]` for
/// items) and the scope its errors name (`site alice/blog`, or empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) path: Vec<String>,
    pub(crate) scope: String,
}

impl Place {
    pub(crate) fn new(path: &[&str], scope: &str) -> Place {
        Place {
            path: path.iter().map(|s| s.to_string()).collect(),
            scope: scope.to_string(),
        }
    }

    /// The place of a key below this one.
    pub(crate) fn child(&self, key: &str) -> Place {
        let mut path = self.path.clone();
        path.push(key.to_string());
        Place {
            path,
            scope: self.scope.clone(),
        }
    }

    /// The place of item `i` of the sequence here.
    pub(crate) fn item(&self, i: usize) -> Place {
        self.child(&format!("[{i}]"))
    }
}

impl Report {
    pub(crate) fn new(file: &Path, index: PositionIndex) -> Report {
        Report {
            file: file.to_path_buf(),
            index,
            errors: Vec::new(),
        }
    }

    fn push(&mut self, line: usize, col: usize, scope: &str, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            col,
            scope: scope.to_string(),
            message,
        });
    }

    /// An error about the value at `at`.
    pub(crate) fn at_value(&mut self, at: &Place, message: impl Into<String>) {
        let pos = self.index.value(&at.path);
        self.push(pos.line, pos.col, &at.scope, message.into());
    }

    /// An error about the key that names `at` (unknown or misplaced keys).
    pub(crate) fn at_key(&mut self, at: &Place, message: impl Into<String>) {
        let pos = self.index.key(&at.path);
        self.push(pos.line, pos.col, &at.scope, message.into());
    }

    /// How many errors so far; with [`Report::clean_since`], whether one
    /// section added any.
    pub(crate) fn mark(&self) -> usize {
        self.errors.len()
    }

    /// No error was added since `mark`.
    pub(crate) fn clean_since(&self, mark: usize) -> bool {
        self.errors.len() == mark
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// A validator's view of one section: errors it reports are placed
    /// relative to the section.
    pub(crate) fn section(&mut self, at: Place) -> Section<'_> {
        let mark = self.mark();
        Section {
            report: self,
            at,
            mark,
        }
    }

    /// `value` if nothing was found wrong, else every error in file order.
    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => {
                self.errors.sort_by_key(|e| (e.line, e.col));
                Err(ConfigErrors(self.errors))
            }
        }
    }
}

/// One section of the file (a site's `cache:`, the global `waf:`...), as
/// its capability validates it.
#[derive(Debug)]
pub(crate) struct Section<'r> {
    report: &'r mut Report,
    at: Place,
    mark: usize,
}

impl Section<'_> {
    /// An error about the value at `keys` below the section (`&[]`: the
    /// section itself).
    pub(crate) fn error(&mut self, keys: &[&str], message: impl Into<String>) {
        let at = self.place(keys);
        self.report.at_value(&at, message);
    }

    /// An error about item `i` of the sequence at `keys`.
    pub(crate) fn error_item(&mut self, keys: &[&str], i: usize, message: impl Into<String>) {
        let at = self.place(keys).item(i);
        self.report.at_value(&at, message);
    }

    /// An error about the key at `keys` (a key that must not be there).
    pub(crate) fn error_key(&mut self, keys: &[&str], message: impl Into<String>) {
        let at = self.place(keys);
        self.report.at_key(&at, message);
    }

    /// Something that works but is probably not what the operator meant:
    /// logged (with its position) at every check, start and reload, never
    /// an error.
    pub(crate) fn warn(&self, keys: &[&str], message: impl std::fmt::Display) {
        let at = self.place(keys);
        let pos = self.report.index.value(&at.path);
        let warning = ConfigError {
            file: self.report.file.clone(),
            line: pos.line,
            col: pos.col,
            scope: at.scope,
            message: format!("warning: {message}"),
        };
        log::warn!("{warning}");
    }

    /// No error was reported for this section.
    pub(crate) fn ok(&self) -> bool {
        self.report.clean_since(self.mark)
    }

    /// `value` when the section is free of errors.
    pub(crate) fn done<T>(&self, value: impl FnOnce() -> T) -> Option<T> {
        self.ok().then(value)
    }

    fn place(&self, keys: &[&str]) -> Place {
        keys.iter().fold(self.at.clone(), |p, k| p.child(k))
    }
}
