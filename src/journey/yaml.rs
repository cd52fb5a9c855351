//! The raw, spanned YAML tree a journey file parses into.
//!
//! serde-saphyr parses the text and gives every node its line and column; we
//! keep the whole document as a small tree ([`Node`]) instead of deserializing
//! straight into structs, so validation can visit every key, report *all*
//! problems at once (serde stops at the first), and suggest fixes.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::Span;

/// A YAML value with its position.
#[derive(Debug, Clone)]
pub struct SNode {
    /// The value.
    pub node: Node,
    /// Where it starts.
    pub span: Span,
}

/// A YAML value.
#[derive(Debug, Clone)]
pub enum Node {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (plain or quoted).
    Str(String),
    /// A sequence.
    Seq(Vec<SNode>),
    /// A mapping, in document order.
    Map(Vec<(SKey, SNode)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone)]
pub struct SKey {
    /// The key text.
    pub name: String,
    /// Where the key is.
    pub span: Span,
}

impl Node {
    /// A short name of the node's type for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "a number",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The scalar as text, when it is a scalar.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

fn span_of<T>(s: &Spanned<T>, fallback_len: usize) -> Span {
    let loc = s.referenced;
    let len = loc.span().len() as usize;
    Span::new(
        loc.line() as u32,
        loc.column() as u32,
        (if len > 0 { len } else { fallback_len }) as u32,
    )
}

struct RawNode(Node);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode(Node::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode(Node::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode(Node::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode(Node::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode(match i64::try_from(v) {
            Ok(i) => Node::Int(i),
            Err(_) => Node::Float(v as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode(Node::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode(Node::Str(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode(Node::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(to_snode(item));
        }
        Ok(RawNode(Node::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let span = span_of(&key, key.value.chars().count());
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((
                SKey {
                    name: key.value,
                    span,
                },
                to_snode(value),
            ));
        }
        Ok(RawNode(Node::Map(entries)))
    }
}

fn to_snode(s: Spanned<RawNode>) -> SNode {
    let fallback = s.value.0.scalar_text().map_or(1, |t| t.chars().count());
    let span = span_of(&s, fallback);
    SNode {
        node: s.value.0,
        span,
    }
}

/// A YAML syntax error with its position and a plain message.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub span: Span,
    /// What it says, without its own snippet.
    pub message: String,
}

/// Parses a whole document into a spanned tree.
pub fn parse(text: &str) -> Result<SNode, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options) {
        Ok(root) => Ok(to_snode(root)),
        Err(e) => {
            let loc = e.location();
            let span = loc.map_or(Span::default(), |l| {
                Span::new(l.line() as u32, l.column() as u32, 1)
            });
            let message = e.without_snippet().to_string();
            Err(SyntaxError {
                span,
                message: clean_message(&message),
            })
        }
    }
}

/// serde-saphyr prefixes messages with "line X column Y: "; our renderer shows
/// the position itself.
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = first.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
        && rest[..idx].contains("column")
    {
        return rest[idx + 2..].to_string();
    }
    // "... at line 2, column 4"
    match first.rfind(" at line ") {
        Some(idx) if first[idx..].contains("column") => first[..idx].to_string(),
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let root = parse("name: x\nsteps:\n  - http: {url: \"a\"}\n").unwrap();
        let Node::Map(entries) = &root.node else {
            panic!()
        };
        assert_eq!(entries[0].0.name, "name");
        assert_eq!(entries[0].0.span, Span::new(1, 1, 4));
        assert_eq!(entries[0].1.span.line, 1);
        assert_eq!(entries[0].1.span.col, 7);
        let Node::Seq(steps) = &entries[1].1.node else {
            panic!()
        };
        let Node::Map(step) = &steps[0].node else {
            panic!()
        };
        assert_eq!(step[0].0.span, Span::new(3, 5, 4));
        let Node::Map(http) = &step[0].1.node else {
            panic!()
        };
        assert_eq!(http[0].0.span.col, 12);
        assert!(matches!(http[0].1.node, Node::Str(ref s) if s == "a"));
    }

    #[test]
    fn scalars_keep_their_types() {
        let root = parse("a: 200\nb: '200'\nc: 1.5\nd: true\ne: ~\n").unwrap();
        let Node::Map(e) = root.node else { panic!() };
        assert!(matches!(e[0].1.node, Node::Int(200)));
        assert!(matches!(e[1].1.node, Node::Str(_)));
        assert!(matches!(e[2].1.node, Node::Float(_)));
        assert!(matches!(e[3].1.node, Node::Bool(true)));
        assert!(matches!(e[4].1.node, Node::Null));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.span.line, 2);
        assert!(!err.message.contains("line 2"), "{}", err.message);
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(dup.span.line, 2);
    }
}
