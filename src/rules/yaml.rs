//! The small YAML writer used for every generated file.
//!
//! Scalars that come from users (labels, annotations, matcher values) are
//! always quoted, so `{{ $labels.x }}`, quotes, colons, `#` and line breaks
//! survive. Names we control are written plain when that is unambiguous.

use std::fmt::Write as _;

/// YAML 1.1 words a plain scalar must not be (they would turn into booleans or null).
const KEYWORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// Whether `c` may appear unescaped inside a quoted or block scalar.
fn printable(c: char) -> bool {
    !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
}

/// A double-quoted scalar; every non-printable character is escaped.
pub fn dq(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if !printable(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A single-quoted scalar when every character is printable, else double-quoted.
pub fn sq(s: &str) -> String {
    if s.chars().all(printable) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        dq(s)
    }
}

fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s.to_ascii_lowercase().as_str())
}

fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A name-like scalar (group, record, alert names, durations): plain when
/// that reads back as the same string, else quoted.
pub fn name(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-' | '/'))
        && !s.ends_with(':')
        && !is_keyword(s);
    if plain || is_duration(s) {
        s.to_string()
    } else {
        dq(s)
    }
}

/// A mapping key: plain for identifiers, else double-quoted.
pub fn key(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !is_keyword(s);
    if plain { s.to_string() } else { dq(s) }
}

/// Writes `key: <expr>`: a literal block for multi-line text, a plain scalar
/// for simple one-liners, a quoted one otherwise. `indent` prefixes the key.
pub fn write_text(out: &mut String, indent: &str, k: &str, text: &str) {
    let block_ok = text.contains('\n')
        && !text.starts_with([' ', '\n'])
        && !text.ends_with('\n')
        && text.chars().all(|c| c == '\n' || printable(c))
        && text.lines().all(|l| !l.ends_with(' '));
    if block_ok {
        let _ = writeln!(out, "{indent}{k}: |-");
        for line in text.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{indent}  {line}");
            }
        }
        return;
    }
    let plain = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '(')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:().*/+<>=! -".contains(c))
        && !text.contains(": ")
        && !text.ends_with([':', ' '])
        && !is_keyword(text)
        && text.parse::<f64>().is_err();
    let v = if plain { text.to_string() } else { sq(text) };
    let _ = writeln!(out, "{indent}{k}: {v}");
}

/// Writes a string map (labels, annotations) with double-quoted values.
pub fn write_map<'a>(
    out: &mut String,
    indent: &str,
    k: &str,
    map: impl IntoIterator<Item = (&'a String, &'a String)>,
) {
    let mut entries = map.into_iter().peekable();
    if entries.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "{indent}{k}:");
    for (mk, mv) in entries {
        let _ = writeln!(out, "{indent}  {}: {}", key(mk), dq(mv));
    }
}

/// Comment lines (`# ...`), one per line of `text`.
pub fn write_comment(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}#");
        } else {
            let _ = writeln!(out, "{indent}# {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(dq("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(dq("x\u{2028}y"), r#""x\u2028y""#);
        assert_eq!(sq("it's"), "'it''s'");
        assert_eq!(
            name("slo:sli_error:ratio_rate5m"),
            "slo:sli_error:ratio_rate5m"
        );
        assert_eq!(name("30s"), "30s");
        assert_eq!(name("1h30m"), "1h30m");
        assert_eq!(name("on"), "\"on\"");
        assert_eq!(name("a b"), "\"a b\"");
        assert_eq!(key("severity"), "severity");
        assert_eq!(key("yes"), "\"yes\"");
        assert_eq!(key("a b"), "\"a b\"");
    }

    #[test]
    fn text_styles() {
        let mut out = String::new();
        write_text(&mut out, "  ", "expr", "vector(0.995)");
        write_text(&mut out, "  ", "expr", "a{b=\"c\"} / 2");
        write_text(&mut out, "  ", "expr", "a\n/\nb");
        assert_eq!(
            out,
            "  expr: vector(0.995)\n  expr: 'a{b=\"c\"} / 2'\n  expr: |-\n    a\n    /\n    b\n"
        );
    }
}
