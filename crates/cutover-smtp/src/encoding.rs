//! Transfer encodings: RFC 2047 encoded-words for headers, quoted-printable (RFC 2045 §6.7)
//! for bodies, and SMTP dot-stuffing (RFC 5321 §4.5.2). All pure and total: any input gives
//! an output, never a panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Longest encoded-word, RFC 2047 §2.
pub const MAX_ENCODED_WORD_CHARS: usize = 75;
/// Longest encoded line of a quoted-printable body (excluding CRLF), RFC 2045 §6.7 rule 5.
pub const MAX_QP_LINE_CHARS: usize = 76;

/// `=?UTF-8?B?` + `?=`.
const ENCODED_WORD_OVERHEAD: usize = 12;
/// Bytes of UTF-8 per encoded-word: 36 bytes → 48 base64 characters → a 60-character word,
/// which leaves room for a header name on the first line within RFC 2047's 76-character lines.
const ENCODED_WORD_MAX_BYTES: usize = 36;

/// Encode `text` as RFC 2047 `B` encoded-words (UTF-8), each ≤ 75 characters, never
/// splitting a character across two words. The words are to be separated by folding
/// whitespace (`CRLF SP`); decoders join adjacent encoded-words without the space.
pub fn encode_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > ENCODED_WORD_MAX_BYTES && !chunk.is_empty() {
            words.push(encode_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(encode_word(&chunk));
    }
    words
}

fn encode_word(chunk: &str) -> String {
    let word = format!("=?UTF-8?B?{}?=", B64.encode(chunk.as_bytes()));
    debug_assert!(word.len() <= MAX_ENCODED_WORD_CHARS);
    debug_assert!(word.len() <= ENCODED_WORD_OVERHEAD + 4 * ENCODED_WORD_MAX_BYTES.div_ceil(3));
    word
}

/// Quoted-printable encoding of a text body, with its line breaks (LF, CRLF or lone CR in the
/// input) written as CRLF. Every output line is ≤ 76 characters and 7-bit; `=` is never
/// followed by `_`, so a multipart boundary starting with `=_` can never occur in the output.
pub fn quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    let bytes = text.as_bytes();
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'\r') => {
                lines.push(bytes.get(start..i).unwrap_or_default());
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            Some(b'\n') => {
                lines.push(bytes.get(start..i).unwrap_or_default());
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    lines.push(bytes.get(start..).unwrap_or_default());

    let last = lines.len().saturating_sub(1);
    for (n, line) in lines.iter().enumerate() {
        qp_line(line, &mut out);
        if n != last {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn qp_line(line: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0usize;
    let last = line.len().saturating_sub(1);
    for (i, &b) in line.iter().enumerate() {
        let at_end = i == last;
        let literal = match b {
            b'=' => false,
            b' ' | b'\t' => !at_end,
            33..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        // Room for the soft break's '=' unless this is the line's last character.
        let limit = if at_end {
            MAX_QP_LINE_CHARS
        } else {
            MAX_QP_LINE_CHARS - 1
        };
        if col + width > limit {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.push(b'=');
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
        col += width;
    }
}

/// Base64 for a body part, in lines of 76 characters with CRLF.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = B64.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for (i, chunk) in encoded.as_bytes().chunks(MAX_QP_LINE_CHARS).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// Dot-stuffing (RFC 5321 §4.5.2): a `.` is added in front of every line that starts with `.`.
/// `data` must use CRLF line breaks (see [`check_crlf_lines`]).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// What is wrong with raw message bytes for SMTP DATA, if anything: a bare CR or LF, or a line
/// longer than `max_line` bytes (excluding CRLF).
pub fn check_crlf_lines(data: &[u8], max_line: usize) -> Option<String> {
    let mut line_start = 0usize;
    let mut i = 0usize;
    while i < data.len() {
        match data.get(i) {
            Some(b'\r') => {
                if data.get(i + 1) != Some(&b'\n') {
                    return Some(format!("bare CR (without LF) at byte {i}"));
                }
                if i - line_start > max_line {
                    return Some(format!(
                        "line at byte {line_start} is {} bytes long; at most {max_line} are allowed",
                        i - line_start
                    ));
                }
                i += 2;
                line_start = i;
            }
            Some(b'\n') => return Some(format!("bare LF (without CR) at byte {i}")),
            _ => i += 1,
        }
    }
    if data.len() - line_start > max_line {
        return Some(format!(
            "line at byte {line_start} is {} bytes long; at most {max_line} are allowed",
            data.len() - line_start
        ));
    }
    None
}

/// Decode the RFC 2047 encoded-words (`B` or `Q`, any charset treated as UTF-8) in an unfolded
/// header value; whitespace between two adjacent encoded-words is dropped, as RFC 2047 §6.2
/// says. Text that is not an encoded-word is kept as it is. For tests and previews.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut last_was_word = false;
    let mut rest = value;
    while !rest.is_empty() {
        let ws_len = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        let (ws, after) = rest.split_at(ws_len);
        pending_space.push_str(ws);
        rest = after;
        if rest.is_empty() {
            break;
        }
        let token_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_len);
        rest = after;
        match decode_word(token) {
            Some(decoded) => {
                if !last_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                last_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(token);
                last_was_word = false;
            }
        }
        pending_space.clear();
    }
    out.push_str(&pending_space);
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let _charset = parts.next()?;
    let enc = parts.next()?;
    let text = parts.next()?;
    let bytes = if enc.eq_ignore_ascii_case("B") {
        B64.decode(text).ok()?
    } else if enc.eq_ignore_ascii_case("Q") {
        let mut out = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b.get(i) {
                Some(b'_') => {
                    out.push(b' ');
                    i += 1;
                }
                Some(b'=') => {
                    let hex = text.get(i + 1..i + 3)?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                }
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
                None => break,
            }
        }
        out
    } else {
        return None;
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Decode a quoted-printable body (soft breaks removed, CRLF kept). For tests and previews.
pub fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        match data.get(i) {
            Some(b'=') => match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                (Some(&h), Some(&l)) => {
                    let hex = [h, l];
                    match std::str::from_utf8(&hex)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 3;
                        }
                        None => {
                            out.push(b'=');
                            i += 1;
                        }
                    }
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            Some(&b) => {
                out.push(b);
                i += 1;
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_are_short_and_round_trip() {
        let text =
            "Passkeys 2027 — déploiement: 🔑 clés d'accès für alle Mitarbeiter 日本語のテキスト";
        let words = encode_words(text);
        assert!(words.len() > 1);
        for w in &words {
            assert!(w.len() <= MAX_ENCODED_WORD_CHARS, "{w}");
            assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="));
        }
        assert_eq!(decode_words(&words.join(" ")), text);
        assert_eq!(decode_words(&words.join("\r\n ")), text);
        assert_eq!(encode_words(""), vec!["=?UTF-8?B??=".to_owned()]);
    }

    #[test]
    fn decode_words_keeps_plain_text_and_spaces() {
        assert_eq!(decode_words("hello  world"), "hello  world");
        assert_eq!(decode_words("a =?UTF-8?B?w6k=?= b"), "a é b");
        assert_eq!(
            decode_words("=?utf-8?q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_words("=?UTF-8?B?!!?="), "=?UTF-8?B?!!?=");
    }

    #[test]
    fn quoted_printable_basics() {
        assert_eq!(quoted_printable("a=b"), b"a=3Db");
        assert_eq!(quoted_printable("trailing \nline"), b"trailing=20\r\nline");
        assert_eq!(quoted_printable("tab\t"), b"tab=09");
        assert_eq!(quoted_printable("é"), b"=C3=A9");
        assert_eq!(quoted_printable("a\r\nb\rc\nd"), b"a\r\nb\r\nc\r\nd");
        let long = "x".repeat(200);
        let qp = quoted_printable(&long);
        for line in qp.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_QP_LINE_CHARS + 1);
        }
        assert_eq!(decode_quoted_printable(&qp), long.as_bytes());
    }

    #[test]
    fn quoted_printable_line_of_exactly_76_needs_no_soft_break() {
        let line = "y".repeat(MAX_QP_LINE_CHARS);
        assert_eq!(quoted_printable(&line), line.as_bytes());
        let line77 = "y".repeat(MAX_QP_LINE_CHARS + 1);
        let qp = quoted_printable(&line77);
        assert!(qp.windows(3).any(|w| w == b"=\r\n"));
    }

    #[test]
    fn quoted_printable_never_produces_equals_underscore() {
        let qp = quoted_printable("=_ =_boundary_= ==__");
        assert!(!qp.windows(2).any(|w| w == b"=_"));
        assert_eq!(decode_quoted_printable(&qp), b"=_ =_boundary_= ==__");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".hidden\r\nok\r\n..two\r\n."),
            b"..hidden\r\nok\r\n...two\r\n.."
        );
        assert_eq!(dot_stuff(b"a.b\r\n"), b"a.b\r\n");
    }

    #[test]
    fn crlf_check() {
        assert_eq!(check_crlf_lines(b"a\r\nb\r\n", 998), None);
        assert!(check_crlf_lines(b"a\nb", 998).unwrap().contains("bare LF"));
        assert!(check_crlf_lines(b"a\rb", 998).unwrap().contains("bare CR"));
        assert_eq!(check_crlf_lines(&[b'z'; 998], 998), None);
        assert!(
            check_crlf_lines(&[b'z'; 999], 998)
                .unwrap()
                .contains("999 bytes")
        );
        let mut two = vec![b'z'; 999];
        two.extend_from_slice(b"\r\n");
        assert!(check_crlf_lines(&two, 998).is_some());
    }

    #[test]
    fn base64_lines_are_76() {
        let b = base64_lines(&[0u8; 200]);
        for line in b.split(|&c| c == b'\n') {
            assert!(line.len() <= 77);
        }
    }
}
