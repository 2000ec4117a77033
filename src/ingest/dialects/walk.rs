//! A streaming walk over a JSON document, for the readers of the chat apps'
//! and helpdesks' exports.
//!
//! A reader ([`Walk`]) says, for each place in the document (its path of
//! keys from the root, `*` standing for any array element), whether to walk
//! into the object or array there, to build that value whole and have it
//! ([`Plan::Take`]), or to skip it unread. So a 200 MB export whose messages
//! sit in one array is read one message at a time: only the message being
//! read, and the few fields a reader takes, are ever built.

use std::cell::Cell;
use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::super::json::LineCountingReader;

/// What to do with the value at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Walk into it: an object's members or an array's elements, one by one.
    Enter,
    /// Build it whole and hand it to [`Walk::take`].
    Take,
    Skip,
}

/// A reader of one JSON layout.
pub(crate) trait Walk {
    /// What to do at `path` (normalised keys: lowercase, no spaces,
    /// underscores or dashes; `*` for an array's elements).
    fn plan(&self, path: &[String]) -> Plan;
    /// A value planned [`Plan::Take`], and the line it starts on.
    fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String>;
    /// An object or array planned [`Plan::Enter`] is over.
    fn leave(&mut self, _path: &[String]) -> Result<(), String> {
        Ok(())
    }
}

/// Lowercases a key and drops spaces, underscores and dashes.
pub(crate) fn key(raw: &str) -> String {
    super::super::columns::normalize(raw)
}

/// Whether `path` is `pattern`: the same keys, `*` for array elements in
/// both, and `?` in the pattern for any one key.
pub(crate) fn is(path: &[String], pattern: &[&str]) -> bool {
    path.len() == pattern.len()
        && path
            .iter()
            .zip(pattern)
            .all(|(p, q)| p == q || (*q == "?" && p != "*"))
}

/// How a walk failed.
#[derive(Debug)]
pub(crate) enum WalkError {
    Io(std::io::Error),
    /// The JSON is malformed, or a reader refused a value: the line and why.
    Json {
        line: u64,
        message: String,
    },
}

/// Walks every top-level value of `input` (one document, or JSON lines) with
/// `walk`.
///
/// serde_json's reader parser asks for one byte at a time, so the count of
/// newlines handed on is exact at every point a visitor looks at it.
pub(crate) fn walk<R: Read>(input: R, walker: &mut dyn Walk) -> Result<(), WalkError> {
    let newlines = std::rc::Rc::new(Cell::new(0));
    let reader = LineCountingReader::new(input, newlines.clone());
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut path = Vec::new();
    let mut values = 0u64;
    loop {
        // Whitespace between (or after) top-level values.
        match skip_whitespace(&mut de) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(json_error(e, &newlines)),
        }
        let node = Node {
            walker: &mut *walker,
            path: &mut path,
            newlines: &newlines,
        };
        node.deserialize(&mut de)
            .map_err(|e| json_error(e, &newlines))?;
        values += 1;
    }
    if values == 0 {
        return Err(WalkError::Json {
            line: 1,
            message: "no JSON value".into(),
        });
    }
    Ok(())
}

/// Whether another value follows (skipping whitespace), `false` at the end.
fn skip_whitespace<R: serde_json::de::Read<'static>>(
    de: &mut serde_json::Deserializer<R>,
) -> Result<bool, serde_json::Error> {
    // `end` succeeds only at the end of the input (after whitespace).
    match de.end() {
        Ok(()) => Ok(false),
        Err(e) if e.classify() == serde_json::error::Category::Syntax => Ok(true),
        Err(e) => Err(e),
    }
}

fn json_error(e: serde_json::Error, newlines: &Cell<u64>) -> WalkError {
    if e.is_io() {
        return WalkError::Io(e.into());
    }
    let text = e.to_string();
    let message = match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    };
    let line = if e.line() > 0 {
        e.line() as u64
    } else {
        newlines.get() + 1
    };
    WalkError::Json {
        line,
        message: if e.is_eof() {
            format!("the JSON is cut short ({message})")
        } else {
            message
        },
    }
}

/// The value at `path`.
struct Node<'a> {
    walker: &'a mut dyn Walk,
    path: &'a mut Vec<String>,
    newlines: &'a Cell<u64>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.walker.plan(self.path) {
            Plan::Skip => d.deserialize_ignored_any(IgnoredAny).map(|_| ()),
            Plan::Take => {
                let line = self.newlines.get() + 1;
                let value = Value::deserialize(d)?;
                self.walker
                    .take(self.path, line, value)
                    .map_err(serde::de::Error::custom)
            }
            Plan::Enter => d.deserialize_any(self),
        }
    }
}

use serde::Deserialize;

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            self.path.push(key(&name));
            let node = Node {
                walker: &mut *self.walker,
                path: &mut *self.path,
                newlines: self.newlines,
            };
            let result = map.next_value_seed(node);
            self.path.pop();
            result?;
        }
        self.walker
            .leave(self.path)
            .map_err(serde::de::Error::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.path.push("*".into());
        loop {
            let node = Node {
                walker: &mut *self.walker,
                path: &mut *self.path,
                newlines: self.newlines,
            };
            match seq.next_element_seed(node) {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) => {
                    self.path.pop();
                    return Err(e);
                }
            }
        }
        self.path.pop();
        self.walker
            .leave(self.path)
            .map_err(serde::de::Error::custom)
    }

    // A scalar where an object or array was expected: nothing to walk.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes every `messages` element and the `id` beside it.
    #[derive(Default)]
    struct Collect {
        taken: Vec<(String, u64, Value)>,
        left: Vec<String>,
    }

    impl Walk for Collect {
        fn plan(&self, path: &[String]) -> Plan {
            if path.is_empty()
                || is(path, &["chats"])
                || is(path, &["chats", "*"])
                || is(path, &["chats", "*", "messages"])
            {
                Plan::Enter
            } else if is(path, &["chats", "*", "messages", "*"]) || is(path, &["chats", "*", "id"])
            {
                Plan::Take
            } else {
                Plan::Skip
            }
        }

        fn take(&mut self, path: &[String], line: u64, value: Value) -> Result<(), String> {
            self.taken.push((path.join("."), line, value));
            Ok(())
        }

        fn leave(&mut self, path: &[String]) -> Result<(), String> {
            self.left.push(path.join("."));
            Ok(())
        }
    }

    #[test]
    fn takes_what_is_planned_with_its_line_and_skips_the_rest() {
        let doc = "{\"about\": {\"big\": [1,2,3]},\n \"Chats\": [\n {\"ID\": 7,\n \"messages\": [\n {\"t\": \"a\"},\n {\"t\": \"b\"}]}]}";
        let mut c = Collect::default();
        walk(doc.as_bytes(), &mut c).unwrap();
        let taken: Vec<(String, u64)> = c.taken.iter().map(|(p, l, _)| (p.clone(), *l)).collect();
        assert_eq!(
            taken,
            vec![
                ("chats.*.id".into(), 3),
                ("chats.*.messages.*".into(), 5),
                ("chats.*.messages.*".into(), 6),
            ]
        );
        assert_eq!(c.taken[2].2["t"], "b");
        assert_eq!(c.left, vec!["chats.*.messages", "chats.*", "chats", ""]);
    }

    #[test]
    fn json_lines_are_walked_value_by_value_and_errors_name_the_line() {
        let mut c = Collect::default();
        walk(
            "{\"chats\":[{\"id\":1}]}\n{\"chats\":[{\"id\":2}]}\n".as_bytes(),
            &mut c,
        )
        .unwrap();
        assert_eq!(c.taken.len(), 2);
        let err = walk(
            "{\"chats\": [\n{\"id\": 1},\n{\"id\" 2}]}".as_bytes(),
            &mut c,
        )
        .unwrap_err();
        assert!(matches!(err, WalkError::Json { line: 3, .. }), "{err:?}");
        let err = walk("{\"chats\": [".as_bytes(), &mut c).unwrap_err();
        assert!(
            matches!(&err, WalkError::Json { message, .. } if message.contains("cut short")),
            "{err:?}"
        );
        assert!(walk("  ".as_bytes(), &mut c).is_err());
    }
}
