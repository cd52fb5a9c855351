//! The one place output is shaped: every excerpt of a body or value that
//! reaches a message, report or page goes through [`shape`], which redacts
//! first and truncates after.

use crate::redact::{Redactor, excerpt};

/// Characters of body shown in failure excerpts.
pub const EXCERPT_CHARS: usize = 240;

/// `text` redacted, then cut to `max` characters.
pub fn shape(redactor: &Redactor, text: &str, max: usize) -> String {
    excerpt(&redactor.apply(text), max)
}

/// The failure excerpt of a response body.
pub fn body(redactor: &Redactor, text: &str) -> String {
    shape(redactor, text, EXCERPT_CHARS)
}
