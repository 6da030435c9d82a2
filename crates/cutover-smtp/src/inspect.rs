//! A small reader for messages as this crate writes them (and as an SMTP sink stores them):
//! headers unfolded, RFC 2047 words decoded, multipart split, bodies decoded. Meant for tests,
//! previews and checking a Maildir; it is lenient (LF or CRLF) and never panics, but it is not
//! a general MIME parser (no nested multiparts beyond one level of [`ParsedMessage::parts`],
//! no charsets other than UTF-8).

use base64::Engine as _;

use crate::encoding::{decode_quoted_printable, decode_words};

/// A message (or a MIME part): its headers in order and its raw body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMessage {
    /// `(name, value)` with the value unfolded and the one space after the colon removed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ParsedMessage {
    /// Split `raw` into headers and body. `None` when there is no header/body separator and
    /// the text does not look like headers at all.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let (head, body) = split_head_body(raw)?;
        let head = String::from_utf8_lossy(head);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let (_, value) = headers.last_mut()?;
                value.push_str(line);
                continue;
            }
            let (name, value) = line.split_once(':')?;
            let value = value.strip_prefix(' ').unwrap_or(value);
            headers.push((name.to_owned(), value.to_owned()));
        }
        Some(Self {
            headers,
            body: body.to_vec(),
        })
    }

    /// The first header of that name (case-insensitive), unfolded, not decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header of that name.
    pub fn all_headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header with RFC 2047 encoded-words decoded.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        self.header(name).map(decode_words)
    }

    /// The addresses (`<...>`) in an address header such as To or Cc.
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let Some(value) = self.header(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let after = rest.get(start + 1..).unwrap_or_default();
            let Some(end) = after.find('>') else { break };
            out.push(after.get(..end).unwrap_or_default().to_owned());
            rest = after.get(end + 1..).unwrap_or_default();
        }
        out
    }

    /// A parameter of a header such as `Content-Type: multipart/alternative; boundary="x"`.
    pub fn header_param(&self, name: &str, param: &str) -> Option<String> {
        let value = self.header(name)?;
        value.split(';').skip(1).find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(param)
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    }

    /// The parts of a multipart message (empty when it is not multipart).
    pub fn parts(&self) -> Vec<ParsedMessage> {
        let is_multipart = self.header("content-type").is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
        let Some(boundary) = self.header_param("content-type", "boundary") else {
            return Vec::new();
        };
        if !is_multipart || boundary.is_empty() {
            return Vec::new();
        }
        let delimiter = format!("--{boundary}");
        let closing = format!("--{boundary}--");
        let body = String::from_utf8_lossy(&self.body);
        let mut parts = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in body.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line == delimiter || line == closing {
                if let Some(lines) = current.take()
                    && let Some(p) = ParsedMessage::parse(lines.join("\r\n").as_bytes())
                {
                    parts.push(p);
                }
                if line == closing {
                    break;
                }
                current = Some(Vec::new());
            } else if let Some(lines) = current.as_mut() {
                lines.push(line);
            }
        }
        parts
    }

    /// The body decoded by its Content-Transfer-Encoding (quoted-printable, base64, or as is),
    /// as UTF-8 (lossy).
    pub fn decoded_text(&self) -> String {
        let cte = self
            .header("content-transfer-encoding")
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = match cte.as_str() {
            "quoted-printable" => decode_quoted_printable(&self.body),
            "base64" => {
                let compact: Vec<u8> = self
                    .body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap_or_default()
            }
            _ => self.body.clone(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn split_head_body(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let lf = raw.windows(2).position(|w| w == b"\n\n");
        if lf.is_none_or(|j| j > i) {
            return Some((raw.get(..i + 2)?, raw.get(i + 4..)?));
        }
    }
    if let Some(j) = raw.windows(2).position(|w| w == b"\n\n") {
        return Some((raw.get(..j + 1)?, raw.get(j + 2..)?));
    }
    // Headers only, no body.
    if raw.contains(&b':') {
        return Some((raw, &[]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_and_crlf_and_folded_headers() {
        let m = ParsedMessage::parse(b"Subject: a\r\n b\r\nTo: <x@y>, \"Q\" <z@w>\r\n\r\nbody")
            .unwrap();
        assert_eq!(m.header("subject"), Some("a b"));
        assert_eq!(m.addresses("TO"), ["x@y", "z@w"]);
        assert_eq!(m.body, b"body");
        let m = ParsedMessage::parse(b"Subject: a\n\nbody\n").unwrap();
        assert_eq!(m.header("Subject"), Some("a"));
        assert_eq!(m.body, b"body\n");
        assert!(ParsedMessage::parse(b" continuation first\r\n\r\n").is_none());
        assert!(ParsedMessage::parse(b"").is_none());
    }

    #[test]
    fn base64_part() {
        let m = ParsedMessage::parse(b"Content-Transfer-Encoding: base64\r\n\r\naMOp\r\nbGxv\r\n")
            .unwrap();
        assert_eq!(m.decoded_text(), "héllo");
    }
}
