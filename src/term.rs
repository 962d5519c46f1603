//! What memeval prints on a terminal. Text that comes from input (scenario
//! and session ids, probe kinds, file names, a server's error messages) may
//! hold control characters: an escape sequence can retitle the window,
//! clear the screen or hide the text before it. Everything printed goes
//! through [`printable`], which shows such characters as escapes instead.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

/// Whether `c` acts on a terminal rather than showing as text: C0 and C1
/// control characters (line feed and tab aside), DEL, and the Unicode
/// controls that reorder or hide text (bidirectional overrides and
/// isolates, as in "Trojan Source").
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every terminal control written as an escape (`\u{1b}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_terminal_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prints `text` on standard output, made [`printable`].
pub fn out(text: &str) {
    let _ = std::io::stdout()
        .lock()
        .write_all(printable(text).as_bytes());
}

/// Prints `text` on standard error, made [`printable`].
pub fn err(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(printable(text).as_bytes());
}

/// `println!` through [`printable`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::term::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`printable`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::term::err(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert!(matches!(printable("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;pwned\u{7}b\rc\u{9b}2Jd\u{202e}e\u{7f}"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{d}c\\u{9b}2Jd\\u{202e}e\\u{7f}"
        );
    }
}
