//! Text cells of the output files that come from input or from a model
//! (user and session ids, probe ids and kinds, fact ids, questions,
//! answers, a judge's reasons, error messages), guarded against
//! spreadsheet formula injection (OWASP's "CSV injection").
//!
//! A spreadsheet runs a cell that begins with `=`, `+`, `-` or `@` (or a
//! tab or carriage return before one) as a formula: a scenario imported
//! from the internet, or a model's answer, could make a reader's
//! spreadsheet fetch a URL or run a command. Such a cell is written with a
//! leading `'`, which spreadsheets take as "text" and do not show; so is a
//! cell that already begins with `'`, so that the rule can be undone
//! exactly: a program reading the files drops one leading `'` from these
//! columns (memeval's own readers do, through [`read`]). Numeric columns
//! are never touched.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serializer};

/// Whether a cell holding `text` is written with a leading `'`.
fn guarded(text: &str) -> bool {
    text.starts_with(['=', '+', '-', '@', '\t', '\r', '\''])
}

/// `text` as written in a cell.
pub fn guard(text: &str) -> Cow<'_, str> {
    if guarded(text) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A cell's text as it was before [`guard`].
pub fn unguard(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// `serialize_with` for a guarded text column.
pub fn write<S: Serializer, T: AsRef<str>>(text: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&guard(text.as_ref()))
}

/// `deserialize_with` for a guarded text column.
pub fn read<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
    let cell = String::deserialize(d)?;
    Ok(T::from(match cell.strip_prefix('\'') {
        Some(rest) => rest.to_string(),
        None => cell,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_written_as_text_and_read_back_exactly() {
        for (text, cell) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+2", "'+1+2"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("'quoted", "''quoted"),
            ("plain answer", "plain answer"),
            ("", ""),
        ] {
            assert_eq!(guard(text), cell);
            assert_eq!(unguard(cell), text);
        }
    }
}
