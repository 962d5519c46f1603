//! A small JSON parser that keeps the line and column of every value and key.
//!
//! serde_json reports positions only for syntax errors; scenario validation
//! also needs them for rule errors found after parsing ("fact `x` is never
//! planted", at the fact's line). It also rejects duplicate keys and bounds
//! nesting depth, both of which a scenario must never rely on.

use std::fmt;

/// Deepest nesting accepted; scenario files need about six levels.
pub const MAX_DEPTH: usize = 64;

/// 1-based line and column (in characters) of a value's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

/// A value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Json,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Json {
    /// The JSON type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses a whole document; trailing non-whitespace is an error.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        text,
        i: 0,
        line: 1,
        line_start: 0,
        col_at: std::cell::Cell::new((0, 1)),
    };
    p.skip_ws();
    if p.i >= p.bytes.len() {
        return Err(p.err("the file is empty: expected a JSON object"));
    }
    let node = p.value(0)?;
    p.skip_ws();
    if p.i < p.bytes.len() {
        return Err(p.err("unexpected text after the end of the JSON document"));
    }
    Ok(node)
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    i: usize,
    line: u32,
    line_start: usize,
    /// The column of a byte offset on the current line, computed last:
    /// positions are asked for in order, so each is counted from the one
    /// before (a file on one line would otherwise cost quadratic time).
    col_at: std::cell::Cell<(usize, u32)>,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        // Columns count characters, not bytes, so editors agree with us.
        let (mut from, mut col) = self.col_at.get();
        if from < self.line_start || from > self.i {
            (from, col) = (self.line_start, 1);
        }
        col += self.text[from..self.i].chars().count() as u32;
        self.col_at.set((self.i, col));
        Pos {
            line: self.line,
            col,
        }
    }

    fn err(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos(),
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.i) {
            match b {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' => {
                    self.i += 1;
                    self.line += 1;
                    self.line_start = self.i;
                }
                _ => break,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.err(format!(
                "JSON nested deeper than {MAX_DEPTH} levels; a scenario never needs that"
            )));
        }
        let pos = self.pos();
        let value = match self.bytes.get(self.i) {
            None => return Err(self.err("unexpected end of file: the JSON is truncated")),
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Json::String(self.string()?),
            Some(b't') => self.literal("true", Json::Bool(true))?,
            Some(b'f') => self.literal("false", Json::Bool(false))?,
            Some(b'n') => self.literal("null", Json::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => {
                let c = self.text[self.i..].chars().next().unwrap_or('?');
                return Err(self.err(format!("unexpected character {c:?}: expected a JSON value")));
            }
        };
        Ok(Node { value, pos })
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, SyntaxError> {
        if self.bytes[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(self.err("invalid literal: expected true, false or null"))
        }
    }

    fn expect_byte(&mut self, b: u8, what: &str) -> Result<(), SyntaxError> {
        self.skip_ws();
        match self.bytes.get(self.i) {
            Some(&c) if c == b => {
                self.i += 1;
                Ok(())
            }
            None => Err(self.err(format!(
                "unexpected end of file: expected {what}; the JSON is truncated"
            ))),
            Some(_) => Err(self.err(format!("expected {what}"))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.i += 1;
        let mut members: Vec<Member> = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.i) != Some(&b'"') {
                return Err(if self.i >= self.bytes.len() {
                    self.err("unexpected end of file inside an object; the JSON is truncated")
                } else {
                    self.err("expected a quoted key (trailing commas are not JSON)")
                });
            }
            let key_pos = self.pos();
            let key = self.string()?;
            if let Some(first) = members.iter().find(|m| m.key == key) {
                return Err(SyntaxError {
                    pos: key_pos,
                    message: format!(
                        "duplicate key {key:?} (first at {}): one of them would be silently lost",
                        first.key_pos
                    ),
                });
            }
            self.expect_byte(b':', "':' after the key")?;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_pos,
                value,
            });
            self.skip_ws();
            match self.bytes.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Object(members));
                }
                None => {
                    return Err(
                        self.err("unexpected end of file inside an object; the JSON is truncated")
                    );
                }
                Some(_) => return Err(self.err("expected ',' or '}' after an object member")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.i) == Some(&b']') {
                return Err(self.err("trailing comma before ']' is not JSON"));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.bytes.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                None => {
                    return Err(
                        self.err("unexpected end of file inside an array; the JSON is truncated")
                    );
                }
                Some(_) => return Err(self.err("expected ',' or ']' after an array element")),
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&b) = self.bytes.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.text[start..self.i]);
            match self.bytes.get(self.i) {
                None => {
                    return Err(
                        self.err("unexpected end of file inside a string; the JSON is truncated")
                    );
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self.bytes.get(self.i).copied();
                    self.i += 1;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => out.push(self.unicode_escape()?),
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape sequence in a string"));
                        }
                    }
                }
                Some(_) => {
                    return Err(self.err(
                        "control character inside a string: write it as an escape such as \\n",
                    ));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .text
            .get(self.i..self.i + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("invalid \\u escape: expected four hex digits"))?;
        let v = u32::from_str_radix(digits, 16).expect("checked hex digits");
        self.i += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.bytes[self.i..].starts_with(b"\\u") {
                return Err(self.err("unpaired UTF-16 surrogate in a \\u escape"));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("invalid low surrogate in a \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err("\\u escape is not a Unicode scalar value"))
    }

    fn number(&mut self) -> Result<Json, SyntaxError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.bytes.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i - s
        };
        if self.bytes.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        if digits(self) == 0 {
            return Err(self.err("invalid number"));
        }
        if self.bytes[int_start] == b'0' && self.i - int_start > 1 {
            self.i = int_start;
            return Err(self.err("invalid number: leading zeros are not JSON"));
        }
        if self.bytes.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.err("invalid number: expected digits after '.'"));
            }
        }
        if matches!(self.bytes.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.bytes.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number: expected digits in the exponent"));
            }
        }
        let n: f64 = self.text[start..self.i]
            .parse()
            .map_err(|_| self.err("invalid number"))?;
        Ok(Json::Number(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let doc = parse("{\n  \"a\": [1, \"x\"],\n  \"é\": true\n}").unwrap();
        let Json::Object(m) = &doc.value else {
            panic!()
        };
        assert_eq!(m[0].key_pos, Pos { line: 2, col: 3 });
        let Json::Array(items) = &m[0].value.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 2, col: 12 });
        assert_eq!(m[1].value.pos, Pos { line: 3, col: 8 });
    }

    #[test]
    fn columns_on_one_long_line_count_characters() {
        // Counted incrementally: each position from the one before.
        let doc = parse("{\"é\": [\"ü😀\", 2], \"b\": {\"c\": 3}}").unwrap();
        let Json::Object(m) = &doc.value else {
            panic!()
        };
        let Json::Array(items) = &m[0].value.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 1, col: 14 });
        assert_eq!(m[1].key_pos, Pos { line: 1, col: 18 });
        let Json::Object(inner) = &m[1].value.value else {
            panic!()
        };
        assert_eq!(inner[0].value.pos, Pos { line: 1, col: 29 });
        // And an error after them is placed from the start of its line.
        let e = parse("{\"é\": 1,\n \"ü\": tru}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 7 });
    }

    #[test]
    fn escapes_and_surrogates() {
        let doc = parse(r#""a\n\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(doc.value, Json::String("a\né😀".into()));
    }

    #[test]
    fn errors_carry_positions() {
        let cases = [
            ("", "empty"),
            ("{\"a\": 1,}", "quoted key"),
            ("{\"a\": 1, \"a\": 2}", "duplicate key"),
            ("{\"a\": [1, 2", "truncated"),
            ("[01]", "leading zeros"),
            ("\"a\tb\"", "control character"),
            ("{} x", "after the end"),
            ("[1,]", "trailing comma"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(want), "{text:?}: {}", e.message);
        }
        let e = parse("{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 8 });
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion_overflow() {
        let text = "[".repeat(100_000);
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nested deeper"));
    }
}
