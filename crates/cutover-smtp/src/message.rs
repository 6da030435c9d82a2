//! The message builder: a [`Message`] becomes RFC 5322 + MIME bytes, ready for SMTP DATA.
//!
//! What comes out: CRLF line breaks only, every line ≤ 998 bytes (headers folded at 78 where
//! possible, bodies quoted-printable at 76), 7-bit only (non-ASCII header text as RFC 2047
//! encoded-words, bodies UTF-8 in quoted-printable), and no header that the caller did not
//! ask for. There is no Bcc: the envelope recipients are To + Cc, and nothing else.
//! Every header value and address is refused when it holds a CR or LF (header injection).

use crate::address::{MAX_DISPLAY_NAME_BYTES, Mailbox, printable, validate_address};
use crate::encoding::{encode_words, quoted_printable};

/// Longest line SMTP allows (RFC 5321 §4.5.3.1.6 / RFC 5322 §2.1.1), without CRLF.
pub const MAX_LINE_BYTES: usize = 998;
/// Header lines are folded to this length where they can be (RFC 5322 §2.1.1 "SHOULD").
pub const FOLD_AT: usize = 78;
/// Most To + Cc recipients in one message (RFC 5321 §4.5.3.1.8: servers accept at least 100).
pub const MAX_RECIPIENTS: usize = 100;
/// Longest Subject or extra header value, in bytes of UTF-8.
pub const MAX_HEADER_VALUE_BYTES: usize = 2048;
/// Most extra headers.
pub const MAX_EXTRA_HEADERS: usize = 32;
/// Longest extra header name.
pub const MAX_HEADER_NAME_BYTES: usize = 64;
/// Longest Message-ID, brackets included.
pub const MAX_MESSAGE_ID_BYTES: usize = 250;
/// Largest text or HTML part, in bytes of UTF-8 before encoding.
pub const MAX_PART_BYTES: usize = 2 * 1024 * 1024;
/// Earliest and latest dates that can be written (RFC 5322 §3.3: four-digit years from 1900).
pub const MIN_DATE_UNIX: i64 = -2_208_988_800; // 1900-01-01T00:00:00Z
pub const MAX_DATE_UNIX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// Headers this builder writes itself; an extra header may not use these names.
const RESERVED_HEADERS: &[&str] = &[
    "date",
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// An e-mail to write. `message_id` is chosen by the caller (e.g. `<uuid@cutover>`) so that
/// the same outbox entry always produces the same Message-ID; `date` is unix seconds (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    /// The plain-text body (always sent; the `text/plain` part).
    pub text: String,
    /// With an HTML body the message is `multipart/alternative` (text first, then HTML).
    pub html: Option<String>,
    /// `<left@right>`, angle brackets included.
    pub message_id: String,
    /// Unix seconds, written as an RFC 5322 date in UTC (`+0000`).
    pub date: i64,
    /// Additional headers (e.g. `Reply-To`, `Auto-Submitted`, `X-Cutover-Campaign`), written
    /// as given; values with non-ASCII text are RFC 2047 encoded (fine for unstructured
    /// headers; structured ones should be ASCII).
    pub extra_headers: Vec<(String, String)>,
}

/// Why a message could not be written. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{field}: the address '{address}' {problem}")]
    Address {
        field: String,
        address: String,
        problem: String,
    },
    #[error(
        "'{value}' is not a usable mailbox: it {problem} (expected address@domain or Name <address@domain>)"
    )]
    Mailbox { value: String, problem: String },
    #[error(
        "{field} contains a line break (CR or LF); header values and addresses must be one line (refused: header injection)"
    )]
    LineBreak { field: String },
    #[error("{field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("the message has no recipients: add at least one To or Cc address")]
    NoRecipients,
    #[error("the message has {count} To + Cc recipients; at most {max} are allowed per message")]
    TooManyRecipients { count: usize, max: usize },
    #[error("message_id '{value}' {problem} (expected <left@right>, e.g. <uuid@cutover>)")]
    MessageId { value: String, problem: String },
    #[error(
        "date {secs} (unix seconds) is outside the years 1900-9999 that an RFC 5322 date can express"
    )]
    Date { secs: i64 },
    #[error("extra header name '{name}' {problem}")]
    HeaderName { name: String, problem: String },
    #[error(
        "extra header '{name}' is written by the builder itself; set the Message field instead (there is never a Bcc header: Cc recipients are in the envelope)"
    )]
    ReservedHeader { name: String },
    #[error("the message has {count} extra headers; at most {max} are allowed")]
    TooManyHeaders { count: usize, max: usize },
}

impl Message {
    /// The envelope recipients (RCPT TO): the To and Cc addresses, in order, without
    /// duplicates (compared case-insensitively).
    pub fn envelope_recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.to.iter().chain(&self.cc) {
            if !out.iter().any(|a| a.eq_ignore_ascii_case(&m.address)) {
                out.push(m.address.clone());
            }
        }
        out
    }

    /// Check every field without writing anything.
    pub fn validate(&self) -> Result<(), MessageError> {
        check_mailbox("from", &self.from)?;
        if self.to.is_empty() && self.cc.is_empty() {
            return Err(MessageError::NoRecipients);
        }
        let count = self.to.len() + self.cc.len();
        if count > MAX_RECIPIENTS {
            return Err(MessageError::TooManyRecipients {
                count,
                max: MAX_RECIPIENTS,
            });
        }
        for (i, m) in self.to.iter().enumerate() {
            check_mailbox(&format!("to[{i}]"), m)?;
        }
        for (i, m) in self.cc.iter().enumerate() {
            check_mailbox(&format!("cc[{i}]"), m)?;
        }
        check_header_value("subject", &self.subject)?;
        check_message_id(&self.message_id)?;
        if !(MIN_DATE_UNIX..=MAX_DATE_UNIX).contains(&self.date) {
            return Err(MessageError::Date { secs: self.date });
        }
        check_part("text", &self.text)?;
        if let Some(html) = &self.html {
            check_part("html", html)?;
        }
        if self.extra_headers.len() > MAX_EXTRA_HEADERS {
            return Err(MessageError::TooManyHeaders {
                count: self.extra_headers.len(),
                max: MAX_EXTRA_HEADERS,
            });
        }
        for (name, value) in &self.extra_headers {
            check_header_name(name)?;
            check_header_value(&format!("extra header '{}'", printable(name)), value)?;
        }
        Ok(())
    }

    /// The message as RFC 5322 bytes (CRLF line breaks, 7-bit, lines ≤ 998 bytes), without
    /// SMTP dot-stuffing (the client does that).
    pub fn to_bytes(&self) -> Result<Vec<u8>, MessageError> {
        self.validate()?;
        let mut out = Vec::with_capacity(
            1024 + self.text.len() * 11 / 10 + self.html.as_ref().map_or(0, |h| h.len() * 11 / 10),
        );
        write_tokens(&mut out, "Date", &[rfc5322_date(self.date)]);
        write_tokens(&mut out, "From", &mailbox_tokens(&self.from, false));
        if !self.to.is_empty() {
            write_tokens(&mut out, "To", &mailbox_list_tokens(&self.to));
        }
        if !self.cc.is_empty() {
            write_tokens(&mut out, "Cc", &mailbox_list_tokens(&self.cc));
        }
        write_tokens(
            &mut out,
            "Message-ID",
            std::slice::from_ref(&self.message_id),
        );
        write_unstructured(&mut out, "Subject", &self.subject);
        write_tokens(&mut out, "MIME-Version", &["1.0".to_owned()]);
        for (name, value) in &self.extra_headers {
            write_unstructured(&mut out, name, value);
        }
        match &self.html {
            None => {
                write_part_headers(&mut out, "text/plain");
                out.extend_from_slice(b"\r\n");
                let body = quoted_printable(&self.text);
                out.extend_from_slice(&body);
                if !body.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            Some(html) => {
                let boundary = self.boundary();
                write_tokens(
                    &mut out,
                    "Content-Type",
                    &[
                        "multipart/alternative;".to_owned(),
                        format!("boundary=\"{boundary}\""),
                    ],
                );
                out.extend_from_slice(b"\r\nThis is a multi-part message in MIME format.\r\n");
                for (mime, body) in [("text/plain", &self.text), ("text/html", html)] {
                    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
                    write_part_headers(&mut out, mime);
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&quoted_printable(body));
                }
                out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            }
        }
        Ok(out)
    }

    /// A boundary that cannot occur in quoted-printable text (it starts with `=_`), derived
    /// from the message so the same message always gives the same bytes.
    fn boundary(&self) -> String {
        // FNV-1a, 64 bits: only needs to be stable, not secret.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.message_id.bytes().chain(self.subject.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("=_cutover_{h:016x}")
    }
}

fn write_part_headers(out: &mut Vec<u8>, mime: &str) {
    write_tokens(
        out,
        "Content-Type",
        &[format!("{mime};"), "charset=\"utf-8\"".to_owned()],
    );
    write_tokens(
        out,
        "Content-Transfer-Encoding",
        &["quoted-printable".to_owned()],
    );
}

fn check_line_breaks(field: &str, value: &str) -> Result<(), MessageError> {
    if value.contains(['\r', '\n']) {
        return Err(MessageError::LineBreak {
            field: field.to_owned(),
        });
    }
    Ok(())
}

fn check_mailbox(field: &str, m: &Mailbox) -> Result<(), MessageError> {
    check_line_breaks(field, &m.address)?;
    validate_address(field, &m.address)?;
    if let Some(name) = &m.name {
        let name_field = format!("{field} display name");
        check_line_breaks(&name_field, name)?;
        if name.len() > MAX_DISPLAY_NAME_BYTES {
            return Err(MessageError::TooLong {
                field: name_field,
                len: name.len(),
                max: MAX_DISPLAY_NAME_BYTES,
            });
        }
    }
    Ok(())
}

fn check_header_value(field: &str, value: &str) -> Result<(), MessageError> {
    check_line_breaks(field, value)?;
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(MessageError::TooLong {
            field: field.to_owned(),
            len: value.len(),
            max: MAX_HEADER_VALUE_BYTES,
        });
    }
    Ok(())
}

fn check_part(field: &str, body: &str) -> Result<(), MessageError> {
    if body.len() > MAX_PART_BYTES {
        return Err(MessageError::TooLong {
            field: field.to_owned(),
            len: body.len(),
            max: MAX_PART_BYTES,
        });
    }
    Ok(())
}

fn check_header_name(name: &str) -> Result<(), MessageError> {
    let problem = |p: &str| MessageError::HeaderName {
        name: printable(name),
        problem: p.to_owned(),
    };
    if name.is_empty() {
        return Err(problem("is empty"));
    }
    if name.len() > MAX_HEADER_NAME_BYTES {
        return Err(problem(&format!(
            "is {} bytes long; at most {MAX_HEADER_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    if name.contains(['\r', '\n']) {
        return Err(problem("contains a line break (refused: header injection)"));
    }
    if !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(problem(
            "may only hold printable ASCII without spaces or ':' (e.g. X-Cutover-Campaign)",
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(MessageError::ReservedHeader {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn check_message_id(id: &str) -> Result<(), MessageError> {
    let problem = |p: &str| MessageError::MessageId {
        value: printable(id),
        problem: p.to_owned(),
    };
    if id.contains(['\r', '\n']) {
        return Err(problem("contains a line break (refused: header injection)"));
    }
    if id.len() > MAX_MESSAGE_ID_BYTES {
        return Err(problem(&format!(
            "is {} bytes long; at most {MAX_MESSAGE_ID_BYTES} are allowed",
            id.len()
        )));
    }
    let Some(inner) = id.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        return Err(problem("is not enclosed in angle brackets"));
    };
    let Some((left, right)) = inner.split_once('@') else {
        return Err(problem("has no '@'"));
    };
    if left.is_empty() || right.is_empty() {
        return Err(problem("has an empty part before or after '@'"));
    }
    let allowed = |b: u8| (33..=126).contains(&b) && !b"<>()[]\\\",;:@".contains(&b);
    if !left.bytes().chain(right.bytes()).all(allowed) {
        return Err(problem(
            "may only hold printable ASCII without spaces or any of <>()[]\\\",;:@ besides the one '@'",
        ));
    }
    Ok(())
}

/// Is `text` safe to write as a plain (unencoded) unstructured header value?
fn plain_ok(text: &str) -> bool {
    text.bytes().all(|b| (0x20..=0x7e).contains(&b)) && !text.contains("=?")
}

/// A display name as tokens: a quoted-string when it is printable ASCII, else encoded-words.
fn name_tokens(name: &str) -> Vec<String> {
    if plain_ok(name) {
        let mut q = String::with_capacity(name.len() + 2);
        q.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        vec![q]
    } else {
        encode_words(name)
    }
}

fn mailbox_tokens(m: &Mailbox, comma: bool) -> Vec<String> {
    let mut tokens = match m.name.as_deref() {
        Some(name) if !name.trim().is_empty() => name_tokens(name),
        _ => Vec::new(),
    };
    let sep = if comma { "," } else { "" };
    tokens.push(format!("<{}>{sep}", m.address));
    tokens
}

fn mailbox_list_tokens(list: &[Mailbox]) -> Vec<String> {
    let last = list.len().saturating_sub(1);
    list.iter()
        .enumerate()
        .flat_map(|(i, m)| mailbox_tokens(m, i != last))
        .collect()
}

/// Write `Name: tok tok tok` folding between tokens (CRLF + space) to keep lines ≤ 78 where
/// possible. A fold is never placed before an empty token (no whitespace-only lines).
fn write_tokens(out: &mut Vec<u8>, name: &str, tokens: &[String]) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    let mut line_len = name.len() + 1;
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 && line_len + 1 + token.len() > FOLD_AT && !token.is_empty() {
            out.extend_from_slice(b"\r\n");
            line_len = 0;
        }
        out.push(b' ');
        out.extend_from_slice(token.as_bytes());
        line_len += 1 + token.len();
    }
    out.extend_from_slice(b"\r\n");
}

/// An unstructured header value: plain and folded at its spaces when it is printable ASCII
/// with no word too long for a line; RFC 2047 encoded-words otherwise.
fn write_unstructured(out: &mut Vec<u8>, name: &str, value: &str) {
    let room = MAX_LINE_BYTES - name.len() - 3;
    if plain_ok(value) && value.split(' ').all(|w| w.len() <= room) {
        let tokens: Vec<String> = value.split(' ').map(str::to_owned).collect();
        write_tokens(out, name, &tokens);
    } else {
        write_tokens(out, name, &encode_words(value));
    }
}

/// RFC 5322 §3.3 date-time in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`. The caller keeps
/// `secs` within [`MIN_DATE_UNIX`]..=[`MAX_DATE_UNIX`]; outside it the year is clamped.
pub fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = secs.clamp(MIN_DATE_UNIX, MAX_DATE_UNIX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .copied()
        .unwrap_or("Thu");
    let month = MONTHS
        .get(usize::try_from(m.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{decode_quoted_printable, decode_words};
    use crate::inspect::ParsedMessage;

    fn sample() -> Message {
        Message {
            from: Mailbox::named("Cutover", "noreply@cutover.example"),
            to: vec![Mailbox::named("Alice Martin", "alice@example.com")],
            cc: vec![Mailbox::named("Bob (manager)", "bob@example.com")],
            subject: "Set up your passkey".to_owned(),
            text: "Hello Alice,\n\nplease register a passkey.\n".to_owned(),
            html: Some("<p>Hello Alice,</p><p>please register a passkey.</p>".to_owned()),
            message_id: "<0190a1b2-c3d4@cutover>".to_owned(),
            date: 1_798_761_600, // 2027-01-01T00:00:00Z
            extra_headers: vec![("X-Cutover-Campaign".to_owned(), "Passkeys 2027".to_owned())],
        }
    }

    fn assert_wire_clean(bytes: &[u8]) {
        assert_eq!(
            crate::encoding::check_crlf_lines(bytes, MAX_LINE_BYTES),
            None,
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert!(bytes.is_ascii());
    }

    #[test]
    fn golden_structure_multipart() {
        let m = sample();
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let s = String::from_utf8(bytes.clone()).unwrap();
        let head_end = s.find("\r\n\r\n").unwrap();
        let head = &s[..head_end + 2];
        let names: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Date",
                "From",
                "To",
                "Cc",
                "Message-ID",
                "Subject",
                "MIME-Version",
                "X-Cutover-Campaign",
                "Content-Type"
            ]
        );
        assert!(
            head.starts_with("Date: Fri, 01 Jan 2027 00:00:00 +0000\r\n"),
            "{head}"
        );
        assert!(head.contains("From: \"Cutover\" <noreply@cutover.example>\r\n"));
        assert!(head.contains("To: \"Alice Martin\" <alice@example.com>\r\n"));
        assert!(head.contains("Cc: \"Bob (manager)\" <bob@example.com>\r\n"));
        assert!(head.contains("Message-ID: <0190a1b2-c3d4@cutover>\r\n"));
        assert!(head.contains("Subject: Set up your passkey\r\n"));
        assert!(head.contains("MIME-Version: 1.0\r\n"));
        assert!(
            !format!("\r\n{head}")
                .to_ascii_lowercase()
                .contains("\r\nbcc:")
        );

        let parsed = ParsedMessage::parse(&bytes).unwrap();
        let ct = parsed.header("content-type").unwrap();
        assert!(
            ct.starts_with("multipart/alternative; boundary=\"=_cutover_"),
            "{ct}"
        );
        let parts = parsed.parts();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].header("content-type").unwrap(),
            "text/plain; charset=\"utf-8\""
        );
        assert_eq!(
            parts[0].header("content-transfer-encoding").unwrap(),
            "quoted-printable"
        );
        assert_eq!(
            parts[0].decoded_text(),
            "Hello Alice,\r\n\r\nplease register a passkey.\r\n"
        );
        assert_eq!(
            parts[1].header("content-type").unwrap(),
            "text/html; charset=\"utf-8\""
        );
        assert_eq!(parts[1].decoded_text(), m.html.clone().unwrap());
        assert!(s.ends_with("--\r\n"));
        // Same message, same bytes (deterministic boundary).
        assert_eq!(m.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn text_only_is_single_part() {
        let mut m = sample();
        m.html = None;
        m.cc.clear();
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let parsed = ParsedMessage::parse(&bytes).unwrap();
        assert_eq!(
            parsed.header("content-type").unwrap(),
            "text/plain; charset=\"utf-8\""
        );
        assert!(parsed.header("cc").is_none());
        assert_eq!(
            parsed.decoded_text(),
            "Hello Alice,\r\n\r\nplease register a passkey.\r\n"
        );
        assert_eq!(m.envelope_recipients(), ["alice@example.com"]);
    }

    #[test]
    fn envelope_is_to_plus_cc_without_duplicates() {
        let mut m = sample();
        m.cc.push(Mailbox::new("ALICE@example.com"));
        assert_eq!(
            m.envelope_recipients(),
            ["alice@example.com", "bob@example.com"]
        );
        m.to.clear();
        assert_eq!(
            m.envelope_recipients(),
            ["bob@example.com", "ALICE@example.com"]
        );
        assert!(m.to_bytes().is_ok(), "Cc only is fine");
        m.cc.clear();
        assert_eq!(m.to_bytes(), Err(MessageError::NoRecipients));
    }

    #[test]
    fn header_injection_is_refused_everywhere() {
        type Mutation = Box<dyn Fn(&mut Message)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "subject",
                Box::new(|m| m.subject = "hi\r\nBcc: evil@x.test".into()),
            ),
            (
                "subject",
                Box::new(|m| m.subject = "hi\nBcc: evil@x.test".into()),
            ),
            ("subject", Box::new(|m| m.subject = "hi\rX".into())),
            (
                "from display name",
                Box::new(|m| m.from.name = Some("A\r\nBcc: e@x.test".into())),
            ),
            (
                "to[0]",
                Box::new(|m| m.to[0].address = "a@x.test\r\nBcc: e@x.test".into()),
            ),
            (
                "cc[0] display name",
                Box::new(|m| m.cc[0].name = Some("x\ny".into())),
            ),
            (
                "extra header 'X-A'",
                Box::new(|m| m.extra_headers = vec![("X-A".into(), "v\r\nBcc: e@x.test".into())]),
            ),
            (
                "extra header name",
                Box::new(|m| m.extra_headers = vec![("X-A\r\nBcc".into(), "v".into())]),
            ),
            (
                "message_id",
                Box::new(|m| m.message_id = "<a@b>\r\nBcc: e@x.test".into()),
            ),
        ];
        for (field, mutate) in cases {
            let mut m = sample();
            mutate(&mut m);
            let e = m.to_bytes().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
            assert!(
                e.contains("line break") || e.contains("control character"),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn bcc_and_other_builder_headers_cannot_be_added() {
        for name in [
            "Bcc",
            "bcc",
            "To",
            "Subject",
            "Content-Type",
            "MIME-Version",
        ] {
            let mut m = sample();
            m.extra_headers = vec![(name.to_owned(), "x".to_owned())];
            assert_eq!(
                m.to_bytes(),
                Err(MessageError::ReservedHeader {
                    name: name.to_owned()
                })
            );
        }
        let mut m = sample();
        m.extra_headers = vec![("X Space".to_owned(), "x".to_owned())];
        assert!(m.to_bytes().unwrap_err().to_string().contains("'X Space'"));
        m.extra_headers = vec![("Reply-To".to_owned(), "helpdesk@example.com".to_owned())];
        let s = String::from_utf8(m.to_bytes().unwrap()).unwrap();
        assert!(s.contains("\r\nReply-To: helpdesk@example.com\r\n"));
    }

    #[test]
    fn bad_addresses_and_ids_are_refused_with_the_field() {
        let mut m = sample();
        m.to.push(Mailbox::new("not-an-address"));
        let e = m.to_bytes().unwrap_err().to_string();
        assert!(
            e.starts_with("to[1]: the address 'not-an-address' has no '@'"),
            "{e}"
        );

        let mut m = sample();
        m.from.address = "a b@example.com".into();
        assert!(m.to_bytes().unwrap_err().to_string().starts_with("from:"));

        for (id, why) in [
            ("abc@def", "angle brackets"),
            ("<abc>", "no '@'"),
            ("<@def>", "empty part"),
            ("<a b@c>", "printable ASCII"),
            ("<a@b@c>", "printable ASCII"),
        ] {
            let mut m = sample();
            m.message_id = id.into();
            let e = m.to_bytes().unwrap_err().to_string();
            assert!(e.contains(why), "{id}: {e}");
        }
    }

    #[test]
    fn non_ascii_subject_and_names_are_encoded_words() {
        let mut m = sample();
        m.subject = "Clés d'accès : c'est le moment — 🔑 Passkeys für alle, jetzt! ".repeat(3);
        m.to[0].name = Some("Zoë Müller-Lüdenscheidt".into());
        m.from.name = Some("Service informatique \"IT\"".into());
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let parsed = ParsedMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.decoded_header("subject").unwrap(), m.subject);
        assert_eq!(
            parsed.decoded_header("to").unwrap(),
            "Zoë Müller-Lüdenscheidt <alice@example.com>"
        );
        assert_eq!(
            parsed.header("from").unwrap(),
            "\"Service informatique \\\"IT\\\"\" <noreply@cutover.example>"
        );
        let raw = String::from_utf8(bytes).unwrap();
        for line in raw.split("\r\n") {
            for word in line.split(' ').filter(|w| w.starts_with("=?")) {
                assert!(word.len() <= 75, "{word}");
            }
        }
    }

    #[test]
    fn ascii_text_that_looks_encoded_is_encoded() {
        let mut m = sample();
        m.subject = "=?UTF-8?B?aGk=?=".into();
        let parsed_bytes = m.to_bytes().unwrap();
        let parsed = ParsedMessage::parse(&parsed_bytes).unwrap();
        assert_eq!(
            parsed.decoded_header("subject").unwrap(),
            "=?UTF-8?B?aGk=?="
        );
    }

    #[test]
    fn long_headers_are_folded() {
        let mut m = sample();
        m.subject = "word ".repeat(100);
        m.to = (0..40)
            .map(|i| Mailbox::named(format!("User Number {i}"), format!("user{i}@example.com")))
            .collect();
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let s = String::from_utf8(bytes.clone()).unwrap();
        let head = &s[..s.find("\r\n\r\n").unwrap()];
        for line in head.split("\r\n") {
            assert!(line.len() <= FOLD_AT, "{line}");
            assert!(!line.trim().is_empty());
        }
        let parsed = ParsedMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.header("subject").unwrap(), m.subject);
        assert_eq!(parsed.addresses("to").len(), 40);
        assert_eq!(parsed.addresses("to")[39], "user39@example.com");

        // A single 2000-byte word cannot be folded at a space: encoded-words instead.
        m.subject = "x".repeat(MAX_HEADER_VALUE_BYTES);
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let parsed = ParsedMessage::parse(&bytes).unwrap();
        assert_eq!(parsed.decoded_header("subject").unwrap(), m.subject);
    }

    #[test]
    fn long_body_lines_and_dots() {
        let mut m = sample();
        m.text = format!(".starts with a dot\n{}\n.\n", "é".repeat(3000));
        m.html = Some(format!("<p>{}</p>", "a".repeat(5000)));
        let bytes = m.to_bytes().unwrap();
        assert_wire_clean(&bytes);
        let parsed = ParsedMessage::parse(&bytes).unwrap();
        let parts = parsed.parts();
        assert_eq!(parts[0].decoded_text(), m.text.replace('\n', "\r\n"));
        assert_eq!(parts[1].decoded_text(), m.html.clone().unwrap());
        // Dot-stuffing is the client's job; the stuffed form round-trips.
        let stuffed = crate::encoding::dot_stuff(&bytes);
        assert!(stuffed.windows(4).any(|w| w == b"\n..s"));
        let unstuffed: Vec<u8> = String::from_utf8(stuffed)
            .unwrap()
            .split("\r\n")
            .map(|l| l.strip_prefix('.').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes();
        assert_eq!(unstuffed, bytes);
        let _ = decode_quoted_printable(b"");
        let _ = decode_words("");
    }

    #[test]
    fn limits_at_the_edge() {
        let mut m = sample();
        m.to = (0..MAX_RECIPIENTS - 1)
            .map(|i| Mailbox::new(format!("u{i}@example.com")))
            .collect();
        assert!(m.to_bytes().is_ok(), "{} recipients", MAX_RECIPIENTS);
        m.cc.push(Mailbox::new("one-more@example.com"));
        assert_eq!(
            m.to_bytes(),
            Err(MessageError::TooManyRecipients {
                count: MAX_RECIPIENTS + 1,
                max: MAX_RECIPIENTS
            })
        );

        let mut m = sample();
        m.subject = "s".repeat(MAX_HEADER_VALUE_BYTES);
        assert!(m.to_bytes().is_ok());
        m.subject.push('s');
        assert!(
            matches!(m.to_bytes(), Err(MessageError::TooLong { ref field, .. }) if field == "subject")
        );

        let mut m = sample();
        m.text = "t".repeat(MAX_PART_BYTES);
        assert!(m.to_bytes().is_ok());
        m.text.push('t');
        assert!(
            matches!(m.to_bytes(), Err(MessageError::TooLong { ref field, .. }) if field == "text")
        );

        let mut m = sample();
        m.html = Some("h".repeat(MAX_PART_BYTES + 1));
        assert!(
            matches!(m.to_bytes(), Err(MessageError::TooLong { ref field, .. }) if field == "html")
        );

        let mut m = sample();
        m.extra_headers = (0..MAX_EXTRA_HEADERS)
            .map(|i| (format!("X-H{i}"), "v".to_owned()))
            .collect();
        assert!(m.to_bytes().is_ok());
        m.extra_headers.push(("X-More".into(), "v".into()));
        assert!(matches!(
            m.to_bytes(),
            Err(MessageError::TooManyHeaders { .. })
        ));

        let mut m = sample();
        m.extra_headers = vec![("X".repeat(MAX_HEADER_NAME_BYTES), "v".into())];
        assert!(m.to_bytes().is_ok());
        m.extra_headers = vec![("X".repeat(MAX_HEADER_NAME_BYTES + 1), "v".into())];
        assert!(matches!(m.to_bytes(), Err(MessageError::HeaderName { .. })));

        let mut m = sample();
        m.to[0].name = Some("n".repeat(MAX_DISPLAY_NAME_BYTES));
        assert!(m.to_bytes().is_ok());
        m.to[0].name = Some("n".repeat(MAX_DISPLAY_NAME_BYTES + 1));
        assert!(
            m.to_bytes()
                .unwrap_err()
                .to_string()
                .contains("to[0] display name")
        );

        let mut m = sample();
        m.message_id = format!("<{}@c>", "i".repeat(MAX_MESSAGE_ID_BYTES - 4));
        assert_eq!(m.message_id.len(), MAX_MESSAGE_ID_BYTES);
        assert!(m.to_bytes().is_ok());
        m.message_id = format!("<{}@c>", "i".repeat(MAX_MESSAGE_ID_BYTES - 3));
        assert!(matches!(m.to_bytes(), Err(MessageError::MessageId { .. })));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_798_761_599),
            "Thu, 31 Dec 2026 23:59:59 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(
            rfc5322_date(MIN_DATE_UNIX),
            "Mon, 01 Jan 1900 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(MAX_DATE_UNIX),
            "Fri, 31 Dec 9999 23:59:59 +0000"
        );
        let mut m = sample();
        m.date = MAX_DATE_UNIX;
        assert!(m.to_bytes().is_ok());
        m.date = MAX_DATE_UNIX + 1;
        assert_eq!(
            m.to_bytes(),
            Err(MessageError::Date {
                secs: MAX_DATE_UNIX + 1
            })
        );
        m.date = MIN_DATE_UNIX - 1;
        assert!(m.to_bytes().is_err());
        m.date = i64::MIN;
        assert!(m.to_bytes().is_err());
        assert_eq!(rfc5322_date(i64::MAX), rfc5322_date(MAX_DATE_UNIX));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn arbitrary_subject_and_body_give_clean_lines(
                subject in "\\PC{0,300}|[ -~\\t]{0,1200}|.{0,50}",
                text in "(\\PC|[\\r\\n\\t .=]){0,3000}",
                html in proptest::option::of("(\\PC|[\\r\\n .=]){0,3000}"),
                name in proptest::option::of("\\PC{0,60}"),
                date in (MIN_DATE_UNIX - 10)..(MAX_DATE_UNIX + 10),
            ) {
                let mut m = sample();
                m.subject = subject.clone();
                m.text = text.clone();
                m.html = html.clone();
                m.to[0].name = name;
                m.date = date;
                match m.to_bytes() {
                    Ok(bytes) => {
                        prop_assert_eq!(crate::encoding::check_crlf_lines(&bytes, MAX_LINE_BYTES), None);
                        prop_assert!(bytes.is_ascii());
                        let parsed = ParsedMessage::parse(&bytes).unwrap();
                        prop_assert_eq!(parsed.decoded_header("subject").unwrap(), subject);
                        let want = text.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n");
                        if html.is_some() {
                            let parts = parsed.parts();
                            prop_assert_eq!(parts.len(), 2);
                            prop_assert_eq!(parts[0].decoded_text(), want);
                            let html_want = html.unwrap_or_default().replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n");
                            prop_assert_eq!(parts[1].decoded_text(), html_want);
                        } else {
                            // A single part always ends with CRLF.
                            let want = if want.ends_with("\r\n") { want } else { want + "\r\n" };
                            prop_assert_eq!(parsed.decoded_text(), want);
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        prop_assert!(
                            subject.contains(['\r', '\n']) || msg.contains("date") || msg.contains("display name"),
                            "unexpected refusal: {}", msg
                        );
                    }
                }
            }
        }
    }
}
