//! SMTP replies (RFC 5321 §4.2): parsing, bounded in size, and the EHLO capabilities.

/// Longest reply line, CRLF included (RFC 5321 §4.5.3.1.5). A longer one is a protocol error.
pub const MAX_REPLY_LINE_BYTES: usize = 512;
/// Most lines in one multi-line reply. More is a protocol error (a hostile or broken server).
pub const MAX_REPLY_LINES: usize = 100;
/// How much of a reply's text is kept in an error message.
pub const MAX_REPLY_TEXT_IN_ERROR: usize = 1024;

/// A complete reply: its code and the text of each line (after `NNN-` / `NNN `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The lines' text joined by spaces, capped at [`MAX_REPLY_TEXT_IN_ERROR`] characters.
    pub fn text(&self) -> String {
        let joined = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if joined.chars().count() > MAX_REPLY_TEXT_IN_ERROR {
            let mut s: String = joined.chars().take(MAX_REPLY_TEXT_IN_ERROR).collect();
            s.push('…');
            s
        } else {
            joined
        }
    }

    /// `(code, text)` as kept in errors and outcomes.
    pub fn pair(&self) -> (u16, String) {
        (self.code, self.text())
    }

    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// One parsed reply line: code, whether it is the last line, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    pub code: u16,
    pub last: bool,
    pub text: String,
}

/// Parse one reply line (without its line break). Codes are three digits, 2xx-5xx; the
/// fourth character is `-` (more lines follow), a space, or absent (last line).
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine, String> {
    let digits = line.get(..3).ok_or_else(|| {
        format!(
            "reply line too short to hold a code: '{}'",
            String::from_utf8_lossy(line)
        )
    })?;
    let mut code: u16 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(format!(
                "reply line does not start with a three-digit code: '{}'",
                String::from_utf8_lossy(line)
                    .chars()
                    .take(80)
                    .collect::<String>()
            ));
        }
        code = code * 10 + u16::from(d - b'0');
    }
    if !(200..600).contains(&code) {
        return Err(format!("reply code {code} is outside 200-599"));
    }
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, line.get(4..).unwrap_or_default()),
        Some(b'-') => (false, line.get(4..).unwrap_or_default()),
        Some(other) => {
            return Err(format!(
                "reply line has '{}' after the code (expected ' ' or '-')",
                char::from(*other).escape_default()
            ));
        }
    };
    Ok(ReplyLine {
        code,
        last,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// What the server announced in its EHLO reply (RFC 5321 §4.1.1.1 and the extensions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    /// AUTH mechanisms, upper-case (RFC 4954; also the old `AUTH=` form).
    pub auth: Vec<String>,
    /// SIZE limit in bytes (RFC 1870); `None` when absent or 0 (no limit announced).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
}

impl Capabilities {
    /// From an EHLO reply: the first line is the server's name, each further line a keyword.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let upper = keyword.to_ascii_uppercase();
            match upper.as_str() {
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SIZE" => {
                    caps.size = words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .filter(|&n| n > 0);
                }
                "AUTH" => caps.add_auth(words),
                _ => {
                    if let Some(first) = upper.strip_prefix("AUTH=") {
                        caps.add_auth(std::iter::once(first).chain(words));
                    }
                }
            }
        }
        caps
    }

    fn add_auth<'a>(&mut self, mechs: impl Iterator<Item = &'a str>) {
        for m in mechs {
            let m = m.to_ascii_uppercase();
            if !m.is_empty() && !self.auth.contains(&m) {
                self.auth.push(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line(b"250-mail.example.com"),
            Ok(ReplyLine {
                code: 250,
                last: false,
                text: "mail.example.com".into()
            })
        );
        assert_eq!(
            parse_reply_line(b"354"),
            Ok(ReplyLine {
                code: 354,
                last: true,
                text: String::new()
            })
        );
        assert!(parse_reply_line(b"25").is_err());
        assert!(parse_reply_line(b"abc hello").is_err());
        assert!(parse_reply_line(b"199 no").is_err());
        assert!(parse_reply_line(b"600 no").is_err());
        assert!(parse_reply_line(b"250x").is_err());
        assert!(parse_reply_line(&[0xff, 0xfe, 0xfd]).is_err());
    }

    #[test]
    fn capabilities() {
        let r = Reply {
            code: 250,
            lines: vec![
                "mx.example Hello".into(),
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "starttls".into(),
                "AUTH LOGIN PLAIN".into(),
                "AUTH=LOGIN XOAUTH2".into(),
                "8BITMIME".into(),
            ],
        };
        let c = Capabilities::from_ehlo(&r);
        assert!(c.starttls && c.eight_bit_mime);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(c.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
        let none = Capabilities::from_ehlo(&Reply {
            code: 250,
            lines: vec!["x".into(), "SIZE".into(), "SIZE 0".into()],
        });
        assert_eq!(none.size, None);
    }

    #[test]
    fn reply_text_is_capped() {
        let r = Reply {
            code: 550,
            lines: vec!["x".repeat(400); 10],
        };
        assert_eq!(r.text().chars().count(), MAX_REPLY_TEXT_IN_ERROR + 1);
        assert_eq!(
            Reply {
                code: 550,
                lines: vec!["5.1.1 no".into(), "such user".into()]
            }
            .pair(),
            (550, "5.1.1 no such user".into())
        );
    }
}
