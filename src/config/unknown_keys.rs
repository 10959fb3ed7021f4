//! Finding unknown keys. serde's `deny_unknown_fields` stops at the first
//! one; `serde_ignored` reports every key the model did not use, and this
//! module finds each one's place in the file so all typos are reported at once.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// One step of a key path reported by `serde_ignored`.
#[derive(Debug, Clone)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Convert a `serde_ignored` path into segments.
pub fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    collect(path, &mut out);
    out
}

fn collect(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            collect(parent, out);
            out.push(Segment::Index(*index));
        }
        // A `Spanned` value's own wrapper key is not the user's.
        Path::Map { parent, key } if key.starts_with("$__serde_spanned_private") => collect(parent, out),
        Path::Map { parent, key } => {
            collect(parent, out);
            out.push(Segment::Key(key.clone()));
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            collect(parent, out)
        }
    }
}

/// The dotted name of a path, as a user would write it.
pub fn dotted(segments: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The span of the key at the end of `segments`, or of the nearest parent
/// that can be found.
pub fn key_span(root: &Spanned<DeTable<'_>>, segments: &[Segment]) -> Range<usize> {
    let mut best = root.span();
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&DeArray<'_>> = None;
    for seg in segments {
        let value = match (seg, table, array) {
            (Segment::Key(name), Some(t), _) => match t.iter().find(|(k, _)| k.get_ref().as_ref() == name) {
                Some((k, v)) => {
                    best = k.span();
                    v
                }
                None => return best,
            },
            (Segment::Index(i), _, Some(a)) => match a.get(*i) {
                Some(v) => {
                    best = v.span();
                    v
                }
                None => return best,
            },
            _ => return best,
        };
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    best
}
