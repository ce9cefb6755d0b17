//! How Go writes text, byte for byte: `encoding/json` strings (as the
//! reference CLI's formatter writes them, with HTML escaping off) and
//! `strconv.Quote` (the `%q` in its error messages).
//!
//! Go strings are bytes, and a decoded URL path may hold any byte, so both
//! take `&[u8]`. Go replaces each byte of an invalid UTF-8 sequence on its
//! own (`utf8.DecodeRune` advances by one), where `String::from_utf8_lossy`
//! replaces a whole truncated sequence once; hence [`runes`].

use std::fmt::Write;

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// A decoded rune, or one byte that starts no valid UTF-8 sequence.
enum Rune<'a> {
    Char(char, &'a str),
    Invalid(u8),
}

/// `s` split as Go's `for range` or `utf8.DecodeRune` splits it.
fn runes(s: &[u8]) -> impl Iterator<Item = Rune<'_>> {
    s.utf8_chunks().flat_map(|chunk| {
        let valid = chunk.valid();
        let chars = valid
            .char_indices()
            .map(move |(i, c)| Rune::Char(c, &valid[i..i + c.len_utf8()]));
        chars.chain(chunk.invalid().iter().map(|&b| Rune::Invalid(b)))
    })
}

fn push_hex_byte(out: &mut String, b: u8) {
    out.push(char::from(LOWER_HEX[usize::from(b >> 4)]));
    out.push(char::from(LOWER_HEX[usize::from(b & 0xf)]));
}

/// `s` as a JSON string literal, as Go's `encoding/json` writes it with
/// `SetEscapeHTML(false)`: `<`, `>` and `&` stay as they are, U+2028 and
/// U+2029 are escaped, control bytes use the short escapes Go knows
/// (`\b \f \n \r \t`) or `\u00XX`, and DEL is written raw.
pub fn json_string(s: &[u8], out: &mut String) {
    out.push('"');
    for rune in runes(s) {
        match rune {
            Rune::Invalid(_) => out.push_str("\\ufffd"),
            Rune::Char('"', _) => out.push_str("\\\""),
            Rune::Char('\\', _) => out.push_str("\\\\"),
            Rune::Char('\u{8}', _) => out.push_str("\\b"),
            Rune::Char('\u{c}', _) => out.push_str("\\f"),
            Rune::Char('\n', _) => out.push_str("\\n"),
            Rune::Char('\r', _) => out.push_str("\\r"),
            Rune::Char('\t', _) => out.push_str("\\t"),
            Rune::Char(c @ ('\u{0}'..='\u{1f}'), _) => {
                out.push_str("\\u00");
                push_hex_byte(out, c as u8);
            }
            Rune::Char(c @ ('\u{2028}' | '\u{2029}'), _) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            Rune::Char(_, text) => out.push_str(text),
        }
    }
    out.push('"');
}

/// Go's `strconv.Quote`.
pub fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for rune in runes(s) {
        match rune {
            Rune::Invalid(b) => {
                out.push_str("\\x");
                push_hex_byte(&mut out, b);
            }
            Rune::Char(c @ ('"' | '\\'), _) => {
                out.push('\\');
                out.push(c);
            }
            Rune::Char(c, text) if is_print(c) => out.push_str(text),
            Rune::Char(c, _) => match c {
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if c < ' ' || c == '\u{7f}' => {
                    out.push_str("\\x");
                    push_hex_byte(&mut out, c as u8);
                }
                c if u32::from(c) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", u32::from(c));
                }
            },
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols
/// and the ASCII space. Outside Latin-1 this knows the separators, the
/// format characters, the private-use planes and the noncharacters, but has
/// no table of unassigned code points (Go escapes those; this prints them),
/// which only ever changes how an error message quotes a URL.
fn is_print(c: char) -> bool {
    let r = u32::from(c);
    if r < 0x100 {
        return (0x20..0x7f).contains(&r) || (0xa1..=0xff).contains(&r) && r != 0xad;
    }
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x1680, 0x1680),
        (0x180e, 0x180e),
        (0x2000, 0x200f),
        (0x2028, 0x202f),
        (0x205f, 0x2064),
        (0x2066, 0x206f),
        (0x3000, 0x3000),
        (0xe000, 0xf8ff),
        (0xfdd0, 0xfdef),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    let noncharacter = r & 0xfffe == 0xfffe;
    !noncharacter && !NOT_PRINT.iter().any(|&(lo, hi)| (lo..=hi).contains(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &[u8]) -> String {
        let mut out = String::new();
        json_string(s, &mut out);
        out
    }

    #[test]
    fn json_strings_are_written_as_go_writes_them() {
        assert_eq!(json(b"a<b>&c"), "\"a<b>&c\"");
        assert_eq!(
            json(b"\x08\x0c\n\r\t\x01\x1f\x7f\"\\"),
            "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\\\"\\\\\""
        );
        assert_eq!(json("\u{2028}\u{2029}ü".as_bytes()), "\"\\u2028\\u2029ü\"");
        // One replacement per byte of a truncated four-byte sequence.
        assert_eq!(
            json(b"p\xff\xf0\x9f\x98"),
            "\"p\\ufffd\\ufffd\\ufffd\\ufffd\""
        );
    }

    #[test]
    fn quoting_matches_strconv_quote() {
        assert_eq!(quote(b"https://a b"), "\"https://a b\"");
        assert_eq!(quote(b"\"\\"), "\"\\\"\\\\\"");
        assert_eq!(quote(b"\x07\x0b\x01\x7f"), "\"\\a\\v\\x01\\x7f\"");
        assert_eq!(
            quote("ü例\u{200b}\u{a0}".as_bytes()),
            "\"ü例\\u200b\\u00a0\""
        );
        assert_eq!(quote(b"%z\xc3"), "\"%z\\xc3\"");
        assert_eq!(quote("\u{f0000}".as_bytes()), "\"\\U000f0000\"");
    }
}
