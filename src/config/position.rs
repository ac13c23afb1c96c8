//! Where each key and value of the YAML file starts (line and column), so that
//! validation errors found after deserialization still point into the file.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A path into the document: map keys, and `[i]` for sequence items.
pub(crate) type YamlPath = Vec<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

#[derive(Debug, Default)]
pub(crate) struct PositionIndex {
    values: HashMap<YamlPath, Pos>,
    keys: HashMap<YamlPath, Pos>,
}

enum Frame {
    Map {
        path: YamlPath,
        key: Option<String>,
    },
    Seq {
        path: YamlPath,
        next: usize,
    },
    /// A mapping or sequence used as a key: not addressable, skipped.
    Skip,
}

struct Builder {
    index: PositionIndex,
    stack: Vec<Frame>,
}

fn pos(mark: &Marker) -> Pos {
    Pos {
        line: mark.line(),
        col: mark.col() + 1,
    }
}

impl Builder {
    /// Called at the start of every node. Returns the node's path, or None when
    /// the node is a key (or inside a skipped key).
    fn node_start(&mut self, scalar_key: Option<&str>, mark: &Marker) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Skip) => None,
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(format!("[{next}]"));
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => {
                    let mut p = path.clone();
                    p.push(k);
                    Some(p)
                }
                None => {
                    // This node is a key.
                    let k = scalar_key.unwrap_or("").to_string();
                    let mut p = path.clone();
                    p.push(k.clone());
                    self.index.keys.entry(p).or_insert(pos(mark));
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.node_start(Some(s), &mark) {
                    self.index.values.entry(p).or_insert(pos(&mark));
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_start(Some(""), &mark) {
                    self.index.values.entry(p).or_insert(pos(&mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let in_key_position = matches!(
                    self.stack.last(),
                    Some(Frame::Map { key: None, .. }) | Some(Frame::Skip)
                );
                if in_key_position {
                    // Complex key: record nothing inside it, and make the
                    // following value addressable under an empty key.
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(String::new());
                    }
                    self.stack.push(Frame::Skip);
                    return;
                }
                let Some(p) = self.node_start(None, &mark) else {
                    self.stack.push(Frame::Skip);
                    return;
                };
                // A collection is best shown by the key that names it (the
                // parser marks block mappings after the key's colon).
                let at = self.index.keys.get(&p).copied().unwrap_or(pos(&mark));
                self.index.values.entry(p.clone()).or_insert(at);
                self.stack.push(if is_map {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl PositionIndex {
    /// Index a document. A document that does not parse gives an empty index
    /// (the YAML error itself is reported by the deserializer, with its position).
    pub(crate) fn build(text: &str) -> PositionIndex {
        let mut b = Builder {
            index: PositionIndex::default(),
            stack: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return PositionIndex::default();
        }
        b.index
    }

    /// Position of the value at `path`, or of its nearest ancestor.
    pub(crate) fn value(&self, path: &[String]) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            if p.is_empty() {
                return Pos { line: 1, col: 1 };
            }
            p = &p[..p.len() - 1];
        }
    }

    /// Position of the key that names `path`, or of the nearest value above it.
    pub(crate) fn key(&self, path: &[String]) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> YamlPath {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_keys_and_values() {
        let doc = "listen: [\"127.0.0.1:8080\"]\naccounts:\n  alice:\n    sites:\n      blog:\n        addresses:\n          - a.example\n          - b.example\n";
        let idx = PositionIndex::build(doc);
        assert_eq!(idx.key(&p(&["listen"])), Pos { line: 1, col: 1 });
        assert_eq!(idx.value(&p(&["listen", "[0]"])), Pos { line: 1, col: 10 });
        assert_eq!(
            idx.key(&p(&["accounts", "alice", "sites", "blog"])),
            Pos { line: 5, col: 7 }
        );
        assert_eq!(
            idx.value(&p(&[
                "accounts",
                "alice",
                "sites",
                "blog",
                "addresses",
                "[1]"
            ])),
            Pos { line: 8, col: 13 }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            idx.value(&p(&["accounts", "alice", "sites", "blog", "nope"])),
            Pos { line: 5, col: 7 }
        );
    }
}
