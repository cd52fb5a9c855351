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
    /// Where the parser stopped (or, for the mistakes we know, where the
    /// mistake is: the tab, the second `---`).
    pub span: Span,
    /// What it says, without its own snippet.
    pub message: String,
    /// What to do about it, when we know better than "fix the syntax".
    pub help: Option<String>,
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
            Err(explain(
                text,
                SyntaxError {
                    span,
                    message: clean_message(&message),
                    help: None,
                },
            ))
        }
    }
}

/// Says the parser's messages in the journey's terms, for the mistakes
/// people make: the parser's own words name its functions and options
/// ("use from_str_multiple", "set DuplicateKeyPolicy"), and it reports a
/// tab where the token before it started.
fn explain(text: &str, mut e: SyntaxError) -> SyntaxError {
    let lines: Vec<&str> = text.lines().collect();
    let msg = e.message.to_ascii_lowercase();
    if msg.contains("multiple yaml documents") {
        // Point at the `---` that starts the second document.
        let upto = (e.span.line as usize).min(lines.len());
        if let Some(i) = (1..upto).rev().find(|&i| lines[i].starts_with("---")) {
            e.span = Span::new(i as u32 + 1, 1, 3);
        }
        e.message = "a journey file holds one YAML document; this starts a second".into();
        e.help = Some("put each journey in its own file (or remove the `---`)".into());
    } else if let Some(key) = e
        .message
        .strip_prefix("duplicate mapping key: ")
        .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
    {
        let first = first_key_line(&lines, &key, e.span);
        e.span.len = key.chars().count().max(1) as u32;
        e.message = format!("duplicate key `{key}`");
        e.help = Some(match first {
            Some(l) => format!("`{key}` is already set on line {l}; keep one"),
            None => format!("`{key}` is already set in this mapping; keep one"),
        });
    } else if msg.contains("unknown anchor") {
        // The alias as written, e.g. `*common-headers`.
        let line = lines.get((e.span.line as usize).wrapping_sub(1)).copied();
        let alias: String = line
            .map(|l| l.chars().skip((e.span.col as usize).saturating_sub(1)))
            .into_iter()
            .flatten()
            .skip_while(|c| *c == '*')
            .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '}' | ']'))
            .collect();
        let alias = if alias.is_empty() {
            "name".into()
        } else {
            alias
        };
        e.span.len = alias.chars().count() as u32 + 1;
        e.message = format!("the alias `*{alias}` refers to no anchor defined before it");
        e.help = Some(format!(
            "mark a value above with `&{alias}`, or spell the alias as the anchor"
        ));
    } else if msg.contains("recursive") {
        e.message = "an alias refers to the value that contains it".into();
        e.help = Some("an alias (`*name`) may only repeat a value defined before it".into());
    } else if msg.contains("budget breached") {
        // serde-saphyr's guard against "billion laughs" files: aliases that
        // expand to too many values, or nesting too deep.
        e.message = "the file expands to more YAML than wayprobe reads: aliases repeat too much or nesting is too deep".into();
        e.help =
            Some("write the repeated values out, or use fewer nested aliases (`*name`)".into());
    } else if msg.contains("tab") {
        if let Some(span) = first_tab(&lines, e.span.line) {
            e.span = span;
        }
        e.message = "a tab in indentation; YAML indents with spaces".into();
        e.help = Some("replace the tab with spaces".into());
    }
    e
}

/// The line where `key` was first written in the mapping of the duplicate
/// at `dup`: the nearest line above at the same column that sets it.
fn first_key_line(lines: &[&str], key: &str, dup: Span) -> Option<usize> {
    let col = (dup.col as usize).saturating_sub(1);
    let line = dup.line as usize;
    let sets = |l: &str, at: usize| {
        l.get(at..).is_some_and(|rest| {
            rest.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
    };
    // A flow mapping (`{a: 1, a: 2}`): the same line, earlier.
    if let Some(l) = lines.get(line.checked_sub(1)?)
        && l.get(..col)
            .is_some_and(|before| before.contains(&format!("{key}:")))
    {
        return Some(line);
    }
    (1..line).rev().find(|&i| {
        let l = lines[i - 1];
        let indent = l.len() - l.trim_start_matches([' ', '-']).len();
        indent == col && sets(l, col)
    })
}

/// The first tab in leading whitespace from `line` on (1-based), else the
/// first tab on `line`.
fn first_tab(lines: &[&str], line: u32) -> Option<Span> {
    let from = (line as usize).saturating_sub(1);
    for (i, l) in lines.iter().enumerate().skip(from) {
        let lead = l.len() - l.trim_start_matches([' ', '\t']).len();
        if let Some(c) = l[..lead].find('\t') {
            return Some(Span::new(
                i as u32 + 1,
                l[..c].chars().count() as u32 + 1,
                1,
            ));
        }
    }
    let l = lines.get(from)?;
    l.find('\t')
        .map(|c| Span::new(line, l[..c].chars().count() as u32 + 1, 1))
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
    fn an_alias_bomb_is_refused_in_plain_words() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = if i == 1 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            let items = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("b{i}: &b{i} [{items}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(
            err.message
                .starts_with("the file expands to more YAML than wayprobe reads"),
            "{}",
            err.message
        );
        assert!(
            err.help
                .as_deref()
                .unwrap_or("")
                .contains("fewer nested aliases")
        );
    }

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

    #[test]
    fn known_mistakes_are_said_in_our_words_where_they_are() {
        let two = parse("name: a\nsteps: []\n---\nname: b\n").unwrap_err();
        assert_eq!((two.span.line, two.span.col), (3, 1));
        assert!(two.message.contains("one YAML document"), "{}", two.message);
        let dup = parse("name: a\nvars:\n  x: 1\nname: b\n").unwrap_err();
        assert_eq!(dup.message, "duplicate key `name`");
        assert_eq!(
            dup.help.as_deref(),
            Some("`name` is already set on line 1; keep one")
        );
        let nested = parse("steps:\n  - name: a\n    http: {}\n    name: b\n").unwrap_err();
        assert_eq!(
            nested.help.as_deref(),
            Some("`name` is already set on line 2; keep one")
        );
        let flow = parse("{a: 1, a: 2}\n").unwrap_err();
        assert_eq!(
            flow.help.as_deref(),
            Some("`a` is already set on line 1; keep one")
        );
        let tab = parse("steps:\n  - name: b\n\t\thttp: {}\n").unwrap_err();
        assert_eq!((tab.span.line, tab.span.col), (3, 1), "{}", tab.message);
        let tab = parse("a:\n  b: 1\n \tc: 2\n").unwrap_err();
        assert_eq!((tab.span.line, tab.span.col), (3, 2), "{}", tab.message);
        let alias = parse("a: *nope\n").unwrap_err();
        assert!(
            alias.message.contains("refers to no anchor"),
            "{}",
            alias.message
        );
        let rec = parse("a: &x [*x]\n").unwrap_err();
        assert!(rec.message.contains("contains it"), "{}", rec.message);
        for e in [two, dup, nested, flow, alias, rec] {
            let all = format!("{} {:?}", e.message, e.help);
            assert!(
                !all.contains("from_str") && !all.contains("Policy"),
                "{all}"
            );
        }
    }
}
