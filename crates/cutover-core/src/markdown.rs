//! Campaign e-mail templates (SPEC §9): a small Markdown subset rendered to an HTML fragment
//! and to plain text, and `{{variable}}` substitution.
//!
//! The subset: `#`, `##`, `###` headings; paragraphs (separated by blank lines, single
//! newlines join); `- ` / `* ` bullet lists and `1. ` numbered lists (one level, a line that
//! does not start an item continues the item before it); `**bold**`, `*italic*` / `_italic_`
//! (`***both***`); `` `code` ``; links `[text](url)` whose url is `http`, `https` or `mailto`
//! (any other link renders as its text alone); bare `https://` URLs; backslash escapes of ASCII
//! punctuation. Nothing else is special: raw HTML is text, and **all** text is HTML-escaped, so
//! the HTML output can only contain the tags `h1`–`h3`, `p`, `ul`, `ol`, `li`, `strong`, `em`,
//! `code` and `a href`.
//!
//! Substitution happens before rendering. [`substitute_escaped`] backslash-escapes every
//! Markdown special in the values (and turns their line breaks into spaces), so a value —
//! a user's display name from the directory — is always rendered as the literal text it is and
//! can neither format the message nor inject markup.
//!
//! Cost: rendering is linear in the input (each inline token is visited once per nesting
//! level, nesting is capped at [`MAX_INLINE_DEPTH`], link destinations are scanned at most
//! [`MAX_URL_CHARS`] characters and [`MAX_URL_PAREN_DEPTH`] parentheses deep); it never panics, whatever the input.

use std::collections::BTreeMap;

/// The variables a template may use, each written `{{name}}` (spaces inside the braces are
/// allowed: `{{ name }}`).
pub const KNOWN_VARIABLES: &[&str] = &[
    "displayName",
    "firstName",
    "campaignName",
    "waveName",
    "enforcementDate",
    "daysLeft",
    "enrolLink",
    "helpdesk",
];

/// Deepest nesting of emphasis and links; delimiters deeper than this are literal text.
pub const MAX_INLINE_DEPTH: usize = 8;
/// Longest link destination looked at, in characters; a longer `(…)` is not a link.
pub const MAX_URL_CHARS: usize = 2048;
/// Deepest nesting of parentheses inside a link destination; deeper is not a link.
pub const MAX_URL_PAREN_DEPTH: usize = 32;
/// Longest variable name looked at between `{{` and `}}`, in characters.
pub const MAX_VARIABLE_NAME_CHARS: usize = 64;
/// Plain-text paragraphs and list items are wrapped at this many characters (a longer word,
/// such as a URL, is never broken).
pub const TEXT_WRAP_COLUMNS: usize = 76;

// ---------------------------------------------------------------------------------------------
// Variables.

/// One `{{…}}` occurrence: the byte range it covers and the name inside (trimmed).
struct Placeholder<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_VARIABLE_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every well-formed placeholder in `src`, in order, and the first malformed one (an
/// unclosed `{{`, or a name that is not letters, digits and `_`).
fn placeholders(src: &str) -> (Vec<Placeholder<'_>>, Option<String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rel) = src.get(pos..).and_then(|s| s.find("{{")) {
        let start = pos + rel;
        let inner_start = start + 2;
        let Some(close_rel) = src.get(inner_start..).and_then(|s| s.find("}}")) else {
            return (
                out,
                Some(format!(
                    "'{{{{' at character {} is never closed with '}}}}'",
                    char_index(src, start) + 1
                )),
            );
        };
        let inner_end = inner_start + close_rel;
        let raw = src.get(inner_start..inner_end).unwrap_or("");
        let name = raw.trim();
        if !is_variable_name(name) {
            return (
                out,
                Some(format!(
                    "'{{{{{}}}}}' at character {} is not a variable (write {{{{name}}}} with one of: {})",
                    clip_chars(raw, 40),
                    char_index(src, start) + 1,
                    KNOWN_VARIABLES.join(", ")
                )),
            );
        }
        out.push(Placeholder {
            start,
            end: inner_end + 2,
            name,
        });
        pos = inner_end + 2;
    }
    (out, None)
}

fn char_index(s: &str, byte: usize) -> usize {
    s.get(..byte).map_or(0, |p| p.chars().count())
}

fn clip_chars(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// The distinct variables `src` uses, in order of first use. An unknown variable or a
/// malformed `{{` is an error naming it and listing the known ones.
pub fn variables_in(src: &str) -> Result<Vec<String>, String> {
    let (found, malformed) = placeholders(src);
    if let Some(problem) = malformed {
        return Err(problem);
    }
    let mut out: Vec<String> = Vec::new();
    for p in found {
        if !KNOWN_VARIABLES.contains(&p.name) {
            return Err(format!(
                "unknown variable {{{{{}}}}}; known: {}",
                p.name,
                KNOWN_VARIABLES.join(", ")
            ));
        }
        if !out.iter().any(|n| n == p.name) {
            out.push(p.name.to_owned());
        }
    }
    Ok(out)
}

/// Variables whose values are URLs or contact details the server or the administrator sets
/// (never the directory): [`substitute_escaped`] keeps a bare `https://` URL in them a link.
pub const URL_VARIABLES: &[&str] = &["enrolLink", "helpdesk"];

fn substitute_with(
    src: &str,
    vars: &BTreeMap<String, String>,
    map: impl Fn(&str, &str) -> String,
) -> String {
    let (found, _) = placeholders(src);
    let mut out = String::with_capacity(src.len());
    let mut pos = 0;
    for p in found {
        out.push_str(src.get(pos..p.start).unwrap_or(""));
        if let Some(v) = vars.get(p.name) {
            out.push_str(&map(p.name, v));
        }
        pos = p.end;
    }
    out.push_str(src.get(pos..).unwrap_or(""));
    out
}

/// Replace every `{{name}}` by its value, verbatim; a variable without a value becomes empty.
/// A malformed `{{` (see [`variables_in`]) and everything after it stay as written. Use this
/// for plain-text contexts; for Markdown use [`substitute_escaped`].
pub fn substitute(src: &str, vars: &BTreeMap<String, String>) -> String {
    substitute_with(src, vars, |_, v| v.to_owned())
}

/// Like [`substitute`], but each value is first passed through [`escape_markdown`], so that
/// [`render`] shows it as the literal text it is (a URL in a value does not become a link,
/// except in the [`URL_VARIABLES`]).
pub fn substitute_escaped(src: &str, vars: &BTreeMap<String, String>) -> String {
    substitute_with(src, vars, |name, v| {
        if URL_VARIABLES.contains(&name) {
            escape_with(v, ESCAPED_IN_URLS)
        } else {
            escape_markdown(v)
        }
    })
}

/// Characters [`escape_markdown`] backslash-escapes: every Markdown special of the subset,
/// and `:` so that a bare `https://` in a value is not a link.
const ESCAPED: &str = "\\`*_[]()#+-.!<>{}|~:";
/// The same without `:`, for the [`URL_VARIABLES`].
const ESCAPED_IN_URLS: &str = "\\`*_[]()#+-.!<>{}|~";

/// `value` as Markdown that renders as exactly that text on one line: every Markdown special
/// is backslash-escaped and line breaks and other control characters become spaces.
pub fn escape_markdown(value: &str) -> String {
    escape_with(value, ESCAPED)
}

fn escape_with(value: &str, specials: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_control() {
            out.push(' ');
        } else {
            if specials.contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// A template rendered both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// An HTML fragment (no `<html>` or `<body>`), every text escaped.
    pub html: String,
    /// Plain text for the `text/plain` part, lines separated by `\n`.
    pub text: String,
}

/// Render the Markdown subset (see the module documentation) to HTML and plain text.
pub fn render(markdown: &str) -> Rendered {
    let blocks = parse_blocks(markdown);
    let mut html = String::with_capacity(markdown.len() + 64);
    let mut text = String::with_capacity(markdown.len() + 64);
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match b {
            Block::Heading(level, src) => {
                let inl = parse_inline(src);
                html.push_str(&format!("<h{level}>"));
                inline_html(&inl, &mut html, false);
                html.push_str(&format!("</h{level}>\n"));
                let mut t = String::new();
                inline_text(&inl, &mut t);
                let t = collapse_spaces(&t);
                let rule = if *level == 1 { '=' } else { '-' };
                let width = t.chars().count().clamp(3, TEXT_WRAP_COLUMNS);
                text.push_str(&t);
                text.push('\n');
                text.extend(std::iter::repeat_n(rule, width));
                text.push('\n');
            }
            Block::Paragraph(src) => {
                let inl = parse_inline(src);
                html.push_str("<p>");
                inline_html(&inl, &mut html, false);
                html.push_str("</p>\n");
                let mut t = String::new();
                inline_text(&inl, &mut t);
                wrap_into(&mut text, &collapse_spaces(&t), "", "");
            }
            Block::List {
                ordered,
                start,
                items,
            } => {
                match (ordered, start) {
                    (false, _) => html.push_str("<ul>\n"),
                    (true, 1) => html.push_str("<ol>\n"),
                    (true, n) => html.push_str(&format!("<ol start=\"{n}\">\n")),
                }
                for (k, src) in items.iter().enumerate() {
                    let inl = parse_inline(src);
                    html.push_str("<li>");
                    inline_html(&inl, &mut html, false);
                    html.push_str("</li>\n");
                    let mut t = String::new();
                    inline_text(&inl, &mut t);
                    let marker = if *ordered {
                        format!("{}. ", start.saturating_add(k as u64))
                    } else {
                        "- ".to_owned()
                    };
                    let hang = " ".repeat(marker.chars().count());
                    wrap_into(&mut text, &collapse_spaces(&t), &marker, &hang);
                }
                html.push_str(if *ordered { "</ol>\n" } else { "</ul>\n" });
            }
        }
    }
    Rendered { html, text }
}

/// Every link target in `markdown` that [`render`] would not turn into a link (not `http`,
/// `https` or `mailto`), in order: what a template check reports.
pub fn refused_links(markdown: &str) -> Vec<String> {
    fn walk(nodes: &[Inline], out: &mut Vec<String>) {
        for n in nodes {
            match n {
                Inline::Strong(c) | Inline::Em(c) => walk(c, out),
                Inline::Link { text, url } => {
                    if !link_allowed(url) {
                        out.push(url.clone());
                    }
                    walk(text, out);
                }
                Inline::Text(_) | Inline::Code(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for b in parse_blocks(markdown) {
        match b {
            Block::Heading(_, s) | Block::Paragraph(s) => walk(&parse_inline(&s), &mut out),
            Block::List { items, .. } => {
                for s in items {
                    walk(&parse_inline(&s), &mut out);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Blocks.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Heading(u8, String),
    Paragraph(String),
    List {
        ordered: bool,
        start: u64,
        items: Vec<String>,
    },
}

enum LineKind<'a> {
    Blank,
    Heading(u8, &'a str),
    Bullet(&'a str),
    Numbered(u64, &'a str),
    Text(&'a str),
}

/// Longest number an ordered-list item may start with, in digits.
const MAX_LIST_NUMBER_DIGITS: usize = 9;

fn classify(line: &str) -> LineKind<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return LineKind::Blank;
    }
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return LineKind::Text(trimmed);
    }
    let rest = line.trim_start_matches(' ');
    let hashes = rest.len() - rest.trim_start_matches('#').len();
    if (1..=3).contains(&hashes) {
        let after = rest.get(hashes..).unwrap_or("");
        if after.is_empty() || after.starts_with([' ', '\t']) {
            // A closing run of `#` (as in `## Title ##`) is dropped.
            let body = after.trim();
            let body = match body.trim_end_matches('#') {
                stripped
                    if stripped.len() < body.len()
                        && (stripped.is_empty() || stripped.ends_with([' ', '\t'])) =>
                {
                    stripped.trim_end()
                }
                _ => body,
            };
            return LineKind::Heading(hashes as u8, body);
        }
    }
    for marker in ["- ", "* ", "-\t", "*\t"] {
        if let Some(item) = rest.strip_prefix(marker) {
            return LineKind::Bullet(item.trim());
        }
    }
    if rest == "-" || rest == "*" {
        return LineKind::Bullet("");
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if (1..=MAX_LIST_NUMBER_DIGITS).contains(&digits) {
        let after = rest.get(digits..).unwrap_or("");
        if let Some(item) = after.strip_prefix('.')
            && (item.is_empty() || item.starts_with([' ', '\t']))
        {
            let n = rest.get(..digits).and_then(|d| d.parse().ok()).unwrap_or(1);
            return LineKind::Numbered(n, item.trim());
        }
    }
    LineKind::Text(trimmed)
}

fn parse_blocks(src: &str) -> Vec<Block> {
    let normalized = src.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    // The open list: ordered?, first number, items (each a list of lines).
    let mut list: Option<(bool, u64, Vec<Vec<&str>>)> = None;

    fn flush_para(para: &mut Vec<&str>, blocks: &mut Vec<Block>) {
        if !para.is_empty() {
            blocks.push(Block::Paragraph(para.join(" ")));
            para.clear();
        }
    }
    fn flush_list(list: &mut Option<(bool, u64, Vec<Vec<&str>>)>, blocks: &mut Vec<Block>) {
        if let Some((ordered, start, items)) = list.take() {
            blocks.push(Block::List {
                ordered,
                start,
                items: items.into_iter().map(|l| l.join(" ")).collect(),
            });
        }
    }

    for line in normalized.split('\n') {
        match classify(line) {
            LineKind::Blank => {
                flush_para(&mut para, &mut blocks);
                flush_list(&mut list, &mut blocks);
            }
            LineKind::Heading(level, body) => {
                flush_para(&mut para, &mut blocks);
                flush_list(&mut list, &mut blocks);
                blocks.push(Block::Heading(level, body.to_owned()));
            }
            LineKind::Bullet(item) => {
                flush_para(&mut para, &mut blocks);
                match &mut list {
                    Some((false, _, items)) => items.push(vec![item]),
                    _ => {
                        flush_list(&mut list, &mut blocks);
                        list = Some((false, 1, vec![vec![item]]));
                    }
                }
            }
            // A numbered line interrupts a paragraph only when it is `1.` (so that a wrapped
            // line starting "2027. " stays text).
            LineKind::Numbered(n, item) if list.is_some() || para.is_empty() || n == 1 => {
                flush_para(&mut para, &mut blocks);
                match &mut list {
                    Some((true, _, items)) => items.push(vec![item]),
                    _ => {
                        flush_list(&mut list, &mut blocks);
                        list = Some((true, n, vec![vec![item]]));
                    }
                }
            }
            LineKind::Numbered(..) => para.push(line.trim()),
            LineKind::Text(t) => match &mut list {
                Some((_, _, items)) => match items.last_mut() {
                    Some(last) => last.push(t),
                    None => para.push(t),
                },
                None => para.push(t),
            },
        }
    }
    flush_para(&mut para, &mut blocks);
    flush_list(&mut list, &mut blocks);
    blocks
}

// ---------------------------------------------------------------------------------------------
// Inlines: tokens first, then a pass that pairs delimiters.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Inline {
    Text(String),
    Code(String),
    Strong(Vec<Inline>),
    Em(Vec<Inline>),
    /// `url` may be refused at output (see [`link_allowed`]).
    Link {
        text: Vec<Inline>,
        url: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Text(String),
    Code(String),
    /// A run of `*` or `_`: its character, length, and whether it may open or close.
    Delim {
        ch: char,
        len: usize,
        open: bool,
        close: bool,
    },
    /// `[`.
    Open,
    /// `]`, with the destination when `(…)` follows.
    Close {
        dest: Option<String>,
    },
    /// A bare `https://` URL.
    Auto(String),
}

fn is_ascii_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// Length of the run of `c` starting at `i`.
fn run_len(chars: &[char], i: usize, c: char) -> usize {
    chars
        .get(i..)
        .map_or(0, |s| s.iter().take_while(|&&x| x == c).count())
}

/// A link destination after `](` starting at `i` (the index after `(`): the unescaped url and
/// the index after the closing `)`.
fn link_dest(chars: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    while chars.get(j) == Some(&' ') {
        j += 1;
    }
    let mut url = String::new();
    let mut depth = 0usize;
    let limit = j.saturating_add(MAX_URL_CHARS);
    loop {
        if j > limit {
            return None;
        }
        let c = *chars.get(j)?;
        match c {
            '\\' if chars.get(j + 1).is_some_and(|&n| is_ascii_punct(n)) => {
                url.push(*chars.get(j + 1)?);
                j += 2;
            }
            '(' => {
                depth += 1;
                if depth > MAX_URL_PAREN_DEPTH {
                    return None;
                }
                url.push(c);
                j += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                url.push(c);
                j += 1;
            }
            ')' => return Some((url, j + 1)),
            ' ' => {
                // Only spaces may follow the url, then `)`.
                while chars.get(j) == Some(&' ') {
                    j += 1;
                }
                return (chars.get(j) == Some(&')')).then_some((url, j + 1));
            }
            c if c.is_whitespace() || c.is_control() || c == '<' || c == '>' => return None,
            c => {
                url.push(c);
                j += 1;
            }
        }
    }
}

fn starts_with_ci(chars: &[char], i: usize, prefix: &str) -> bool {
    let mut k = i;
    for p in prefix.chars() {
        match chars.get(k) {
            Some(c) if c.eq_ignore_ascii_case(&p) => k += 1,
            _ => return false,
        }
    }
    true
}

/// A bare `https://` URL at `i` (the scheme written literally, not escaped, and a letter or
/// digit after it): the unescaped url and the index after it. Trailing punctuation (`.`, `,`,
/// an unbalanced `)`, …) is left out, as it ends a sentence.
fn bare_url(chars: &[char], i: usize) -> Option<(String, usize)> {
    if !starts_with_ci(chars, i, "https://") {
        return None;
    }
    if i > 0
        && chars
            .get(i - 1)
            .is_some_and(|c| c.is_alphanumeric() || *c == '\\')
    {
        return None;
    }
    if !chars
        .get(i + "https://".len())
        .is_some_and(|c| c.is_alphanumeric())
    {
        return None;
    }
    // (char, index after it in the source)
    let mut taken: Vec<(char, usize)> = Vec::new();
    let (mut opens, mut closes) = (0usize, 0usize);
    let mut j = i;
    while let Some(&c) = chars.get(j) {
        if c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`') {
            break;
        }
        let (c, next) = if c == '\\' {
            match chars.get(j + 1) {
                Some(&n) if is_ascii_punct(n) => (n, j + 2),
                _ => break,
            }
        } else {
            (c, j + 1)
        };
        opens += usize::from(c == '(');
        closes += usize::from(c == ')');
        taken.push((c, next));
        j = next;
    }
    while let Some(&(last, _)) = taken.last() {
        let unbalanced_close = last == ')' && closes > opens;
        if matches!(
            last,
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '"' | '*' | '_' | ']'
        ) || unbalanced_close
        {
            closes -= usize::from(last == ')');
            taken.pop();
        } else {
            break;
        }
    }
    // The scheme and the first host character are never trimmed, so the url is never empty.
    let end = taken.last().map(|(_, e)| *e)?;
    let url: String = taken.iter().map(|(c, _)| *c).collect();
    Some((url, end))
}

fn tokenize(src: &str) -> Vec<Tok> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut text = String::new();
    // Backtick run lengths known to have no closing run further on.
    let mut no_code_closer: Vec<usize> = Vec::new();
    let flush = |text: &mut String, toks: &mut Vec<Tok>| {
        if !text.is_empty() {
            toks.push(Tok::Text(std::mem::take(text)));
        }
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => match chars.get(i + 1) {
                Some(&'`') => {
                    // An escaped backtick makes its whole run literal.
                    let n = run_len(&chars, i + 1, '`');
                    text.extend(std::iter::repeat_n('`', n));
                    i += 1 + n;
                }
                Some(&n) if is_ascii_punct(n) => {
                    text.push(n);
                    i += 2;
                }
                _ => {
                    text.push('\\');
                    i += 1;
                }
            },
            '`' => {
                let n = run_len(&chars, i, '`');
                let mut closing = None;
                if !no_code_closer.contains(&n) {
                    let mut j = i + n;
                    while j < chars.len() {
                        if chars.get(j) == Some(&'`') {
                            let m = run_len(&chars, j, '`');
                            if m == n {
                                closing = Some(j);
                                break;
                            }
                            j += m;
                        } else {
                            j += 1;
                        }
                    }
                    if closing.is_none() {
                        no_code_closer.push(n);
                    }
                }
                match closing {
                    Some(j) => {
                        let mut code: String = chars.get(i + n..j).unwrap_or(&[]).iter().collect();
                        if code.len() >= 2
                            && code.starts_with(' ')
                            && code.ends_with(' ')
                            && !code.trim().is_empty()
                        {
                            code = code.get(1..code.len() - 1).unwrap_or("").to_owned();
                        }
                        flush(&mut text, &mut toks);
                        toks.push(Tok::Code(code));
                        i = j + n;
                    }
                    None => {
                        text.extend(std::iter::repeat_n('`', n));
                        i += n;
                    }
                }
            }
            '*' | '_' => {
                let n = run_len(&chars, i, c);
                let before = if i == 0 {
                    None
                } else {
                    chars.get(i - 1).copied()
                };
                let after = chars.get(i + n).copied();
                let mut open = after.is_some_and(|a| !a.is_whitespace());
                let mut close = before.is_some_and(|b| !b.is_whitespace());
                if c == '_' {
                    // No emphasis inside words: snake_case stays as written.
                    open &= !before.is_some_and(|b| b.is_alphanumeric());
                    close &= !after.is_some_and(|a| a.is_alphanumeric());
                }
                flush(&mut text, &mut toks);
                toks.push(Tok::Delim {
                    ch: c,
                    len: n,
                    open,
                    close,
                });
                i += n;
            }
            '[' => {
                flush(&mut text, &mut toks);
                toks.push(Tok::Open);
                i += 1;
            }
            ']' => {
                flush(&mut text, &mut toks);
                if chars.get(i + 1) == Some(&'(')
                    && let Some((url, end)) = link_dest(&chars, i + 2)
                {
                    toks.push(Tok::Close { dest: Some(url) });
                    i = end;
                    continue;
                }
                toks.push(Tok::Close { dest: None });
                i += 1;
            }
            'h' | 'H' => match bare_url(&chars, i) {
                Some((url, end)) => {
                    flush(&mut text, &mut toks);
                    toks.push(Tok::Auto(url));
                    i = end;
                }
                None => {
                    text.push(c);
                    i += 1;
                }
            },
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    flush(&mut text, &mut toks);
    toks
}

/// For each delimiter kind, the index of the next token (at or after each index) that may
/// close it: kinds are `*`/`_` × run length 1, 2, 3.
struct Closers {
    next: [Vec<usize>; 6],
    next_close_bracket: Vec<usize>,
}

fn kind(ch: char, len: usize) -> Option<usize> {
    let base = match ch {
        '*' => 0,
        '_' => 3,
        _ => return None,
    };
    (1..=3).contains(&len).then_some(base + len - 1)
}

impl Closers {
    fn new(toks: &[Tok]) -> Self {
        let n = toks.len();
        let mut next: [Vec<usize>; 6] = std::array::from_fn(|_| vec![n; n + 1]);
        let mut next_close_bracket = vec![n; n + 1];
        for (i, tok) in toks.iter().enumerate().rev() {
            let closes = match tok {
                Tok::Delim {
                    ch,
                    len,
                    close: true,
                    ..
                } => kind(*ch, *len),
                _ => None,
            };
            for (k, v) in next.iter_mut().enumerate() {
                let later = v.get(i + 1).copied().unwrap_or(n);
                if let Some(slot) = v.get_mut(i) {
                    *slot = if closes == Some(k) { i } else { later };
                }
            }
            let later = next_close_bracket.get(i + 1).copied().unwrap_or(n);
            if let Some(slot) = next_close_bracket.get_mut(i) {
                *slot = if matches!(tok, Tok::Close { .. }) {
                    i
                } else {
                    later
                };
            }
        }
        Self {
            next,
            next_close_bracket,
        }
    }
}

fn delim_literal(ch: char, len: usize) -> Inline {
    Inline::Text(std::iter::repeat_n(ch, len).collect())
}

fn build(toks: &[Tok], closers: &Closers, from: usize, to: usize, depth: usize) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        let Some(tok) = toks.get(i) else { break };
        match tok {
            Tok::Text(t) => out.push(Inline::Text(t.clone())),
            Tok::Code(c) => out.push(Inline::Code(c.clone())),
            Tok::Auto(u) => out.push(Inline::Link {
                text: vec![Inline::Text(u.clone())],
                url: u.clone(),
            }),
            Tok::Close { dest: None } => out.push(Inline::Text("]".into())),
            Tok::Close { dest: Some(url) } => out.push(Inline::Text(format!("]({url})"))),
            Tok::Open => {
                let j = closers.next_close_bracket.get(i + 1).copied().unwrap_or(to);
                match toks.get(j) {
                    Some(Tok::Close {
                        dest: Some(url), ..
                    }) if j < to && depth < MAX_INLINE_DEPTH => {
                        out.push(Inline::Link {
                            text: build(toks, closers, i + 1, j, depth + 1),
                            url: url.clone(),
                        });
                        i = j + 1;
                        continue;
                    }
                    _ => out.push(Inline::Text("[".into())),
                }
            }
            Tok::Delim { ch, len, open, .. } => {
                let closer = match kind(*ch, *len) {
                    Some(k) if *open && depth < MAX_INLINE_DEPTH => closers
                        .next
                        .get(k)
                        .and_then(|v| v.get(i + 1))
                        .copied()
                        .filter(|&j| j < to),
                    _ => None,
                };
                match closer {
                    Some(j) => {
                        let inner = build(toks, closers, i + 1, j, depth + 1);
                        out.push(match len {
                            1 => Inline::Em(inner),
                            2 => Inline::Strong(inner),
                            _ => Inline::Strong(vec![Inline::Em(inner)]),
                        });
                        i = j + 1;
                        continue;
                    }
                    None => out.push(delim_literal(*ch, *len)),
                }
            }
        }
        i += 1;
    }
    merge_text(out)
}

fn merge_text(nodes: Vec<Inline>) -> Vec<Inline> {
    let mut out: Vec<Inline> = Vec::with_capacity(nodes.len());
    for n in nodes {
        match (out.last_mut(), n) {
            (Some(Inline::Text(prev)), Inline::Text(t)) => prev.push_str(&t),
            (_, n) => out.push(n),
        }
    }
    out
}

fn parse_inline(src: &str) -> Vec<Inline> {
    let toks = tokenize(src);
    let closers = Closers::new(&toks);
    build(&toks, &closers, 0, toks.len(), 0)
}

/// Whether a link target may become a link: `http://` or `https://` with a host, or
/// `mailto:` with an address; nothing that could hold a space, a control character or a quote.
fn link_allowed(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("mailto:") {
        r
    } else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with(['/', '?', '#', '@'])
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'))
}

fn escape_html_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `in_link`: inside an `<a>`, where a nested link renders as its text.
fn inline_html(nodes: &[Inline], out: &mut String, in_link: bool) {
    for n in nodes {
        match n {
            Inline::Text(t) => escape_html_into(t, out),
            Inline::Code(c) => {
                out.push_str("<code>");
                escape_html_into(c, out);
                out.push_str("</code>");
            }
            Inline::Strong(c) => {
                out.push_str("<strong>");
                inline_html(c, out, in_link);
                out.push_str("</strong>");
            }
            Inline::Em(c) => {
                out.push_str("<em>");
                inline_html(c, out, in_link);
                out.push_str("</em>");
            }
            Inline::Link { text, url } => {
                if in_link || !link_allowed(url) {
                    inline_html(text, out, in_link);
                } else {
                    out.push_str("<a href=\"");
                    escape_html_into(url, out);
                    out.push_str("\">");
                    inline_html(text, out, true);
                    out.push_str("</a>");
                }
            }
        }
    }
}

fn inline_text(nodes: &[Inline], out: &mut String) {
    for n in nodes {
        match n {
            Inline::Text(t) | Inline::Code(t) => out.push_str(t),
            Inline::Strong(c) | Inline::Em(c) => inline_text(c, out),
            Inline::Link { text, url } => {
                let mut t = String::new();
                inline_text(text, &mut t);
                out.push_str(&t);
                let shown = url.strip_prefix("mailto:").unwrap_or(url);
                if link_allowed(url) && t.trim() != url && t.trim() != shown {
                    out.push_str(" (");
                    out.push_str(url);
                    out.push(')');
                }
            }
        }
    }
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Append `s` wrapped at [`TEXT_WRAP_COLUMNS`]: the first line starts with `first`, the
/// others with `rest`; words are never broken.
fn wrap_into(out: &mut String, s: &str, first: &str, rest: &str) {
    let mut line = String::from(first);
    let mut line_len = first.chars().count();
    let mut has_word = false;
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let wlen = word.chars().count();
        if has_word && line_len + 1 + wlen > TEXT_WRAP_COLUMNS {
            out.push_str(&line);
            out.push('\n');
            line = String::from(rest);
            line_len = rest.chars().count();
            has_word = false;
        }
        if has_word {
            line.push(' ');
            line_len += 1;
        }
        line.push_str(word);
        line_len += wlen;
        has_word = true;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn html(md: &str) -> String {
        render(md).html
    }

    fn text(md: &str) -> String {
        render(md).text
    }

    #[test]
    fn variables_are_listed_once_in_order() {
        assert_eq!(
            variables_in("Hi {{firstName}}, {{ enrolLink }} {{firstName}} {{daysLeft}}").unwrap(),
            vec!["firstName", "enrolLink", "daysLeft"]
        );
        assert_eq!(
            variables_in("no variables } { }}").unwrap(),
            Vec::<String>::new()
        );
        for v in KNOWN_VARIABLES {
            assert_eq!(
                variables_in(&format!("{{{{{v}}}}}")).unwrap(),
                vec![v.to_string()]
            );
        }
    }

    #[test]
    fn unknown_and_malformed_variables_are_named() {
        let cases: &[(&str, &str)] = &[
            ("Hello {{nmae}}", "unknown variable {{nmae}}"),
            ("Hello {{firstName", "'{{' at character 7 is never closed"),
            (
                "Hello {{first name}}",
                "'{{first name}}' at character 7 is not a variable",
            ),
            ("{{}}", "'{{}}' at character 1 is not a variable"),
            ("é {{<b>}}", "'{{<b>}}' at character 3"),
        ];
        for (src, want) in cases {
            let err = variables_in(src).unwrap_err();
            assert!(err.contains(want), "{src:?}: {err}");
        }
        assert!(
            variables_in("{{x}}")
                .unwrap_err()
                .contains("known: displayName, firstName")
        );
    }

    #[test]
    fn substitute_replaces_known_and_blanks_missing() {
        let v = vars(&[("firstName", "Ada"), ("daysLeft", "3")]);
        assert_eq!(
            substitute("Hi {{firstName}}, {{ daysLeft }} days. {{helpdesk}}.", &v),
            "Hi Ada, 3 days. ."
        );
        // Values are not substituted again, and a malformed tail stays as written.
        let v = vars(&[("firstName", "{{daysLeft}}"), ("daysLeft", "3")]);
        assert_eq!(
            substitute("{{firstName}} {{oops", &v),
            "{{daysLeft}} {{oops"
        );
    }

    #[test]
    fn escaped_values_render_as_literal_text() {
        let evil = "<script>alert(1)</script> **bold** [x](https://evil.example) _i_ `c` # h\n- item\n1. one \\";
        let v = vars(&[("displayName", evil)]);
        let md = substitute_escaped("Hello {{displayName}}!", &v);
        let r = render(&md);
        assert!(!r.html.contains("<script"), "{}", r.html);
        assert!(
            !r.html.contains("<strong>") && !r.html.contains("<a ") && !r.html.contains("<em>")
        );
        assert!(!r.html.contains("<code>") && !r.html.contains("<h1>") && !r.html.contains("<li>"));
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; **bold** [x](https://evil.example) _i_ `c` # h - item 1. one \\"), "{}", r.html);
        assert_eq!(
            r.text,
            "Hello <script>alert(1)</script> **bold** [x](https://evil.example) _i_ `c` #\nh - item 1. one \\!\n"
        );
        // A value alone on a line cannot become a heading or a list.
        for v in ["# Boss", "- x", "1. x", "* x", "### x"] {
            let md = substitute_escaped("{{displayName}}", &vars(&[("displayName", v)]));
            assert_eq!(html(&md), format!("<p>{v}</p>\n"));
        }
    }

    #[test]
    fn escaped_links_still_work_as_link_targets_and_bare_urls() {
        let v = vars(&[("enrolLink", "https://id.example.com/enrol?a=1&b=(2)_x")]);
        let md = substitute_escaped("[Register]({{enrolLink}}) or {{enrolLink}}.", &v);
        assert_eq!(
            html(&md),
            "<p><a href=\"https://id.example.com/enrol?a=1&amp;b=(2)_x\">Register</a> or <a href=\"https://id.example.com/enrol?a=1&amp;b=(2)_x\">https://id.example.com/enrol?a=1&amp;b=(2)_x</a>.</p>\n"
        );
        assert_eq!(
            text(&md),
            "Register (https://id.example.com/enrol?a=1&b=(2)_x) or\nhttps://id.example.com/enrol?a=1&b=(2)_x.\n"
        );
    }

    #[test]
    fn blocks() {
        let cases: &[(&str, &str)] = &[
            ("# One", "<h1>One</h1>\n"),
            ("## Two ##", "<h2>Two</h2>\n"),
            ("### Three", "<h3>Three</h3>\n"),
            ("#### Four", "<p>#### Four</p>\n"),
            ("#NoSpace", "<p>#NoSpace</p>\n"),
            ("a\nb\n\nc", "<p>a b</p>\n<p>c</p>\n"),
            ("a\r\nb\r\rc", "<p>a b</p>\n<p>c</p>\n"),
            (
                "- x\n- y\n* z",
                "<ul>\n<li>x</li>\n<li>y</li>\n<li>z</li>\n</ul>\n",
            ),
            (
                "- x\n  continued\n- y",
                "<ul>\n<li>x continued</li>\n<li>y</li>\n</ul>\n",
            ),
            ("1. x\n2. y", "<ol>\n<li>x</li>\n<li>y</li>\n</ol>\n"),
            (
                "3. x\n4. y",
                "<ol start=\"3\">\n<li>x</li>\n<li>y</li>\n</ol>\n",
            ),
            (
                "- x\n1. y",
                "<ul>\n<li>x</li>\n</ul>\n<ol>\n<li>y</li>\n</ol>\n",
            ),
            ("text\n- x", "<p>text</p>\n<ul>\n<li>x</li>\n</ul>\n"),
            ("In\n2027. we", "<p>In 2027. we</p>\n"),
            ("text\n1. x", "<p>text</p>\n<ol>\n<li>x</li>\n</ol>\n"),
            ("# H\npara", "<h1>H</h1>\n<p>para</p>\n"),
            ("*not a list*", "<p><em>not a list</em></p>\n"),
            ("1234567890. big", "<p>1234567890. big</p>\n"),
            ("", ""),
            ("\n\n  \n", ""),
        ];
        for (md, want) in cases {
            assert_eq!(&html(md), want, "{md:?}");
        }
    }

    #[test]
    fn inlines() {
        let cases: &[(&str, &str)] = &[
            (
                "**b** *i* _i_ `c`",
                "<strong>b</strong> <em>i</em> <em>i</em> <code>c</code>",
            ),
            ("***both***", "<strong><em>both</em></strong>"),
            ("**a *b* c**", "<strong>a <em>b</em> c</strong>"),
            ("snake_case_name", "snake_case_name"),
            ("2 * 3 * 4", "2 * 3 * 4"),
            ("**open", "**open"),
            ("`a <b>`", "<code>a &lt;b&gt;</code>"),
            ("`` a ` b ``", "<code>a ` b</code>"),
            ("`**x**`", "<code>**x**</code>"),
            ("`unclosed", "`unclosed"),
            ("\\*lit\\*", "*lit*"),
            ("a \\ b", "a \\ b"),
            (
                "[t](https://x.example/a)",
                "<a href=\"https://x.example/a\">t</a>",
            ),
            (
                "[t](mailto:help@example.com)",
                "<a href=\"mailto:help@example.com\">t</a>",
            ),
            (
                "[t](http://x.example)",
                "<a href=\"http://x.example\">t</a>",
            ),
            ("[t](javascript:alert(1))", "t"),
            ("[t](/relative)", "t"),
            ("[t](https://)", "t"),
            (
                "[**b**](https://x.example)",
                "<a href=\"https://x.example\"><strong>b</strong></a>",
            ),
            (
                "[a [b](https://x.example)",
                "<a href=\"https://x.example\">a [b</a>",
            ),
            (
                "[see] [x](https://x.example)",
                "[see] <a href=\"https://x.example\">x</a>",
            ),
            ("[no link]", "[no link]"),
            // Titles are not part of the subset: the bracket stays text, the URL is bare.
            (
                "[t](https://x.example \"title\")",
                "[t](<a href=\"https://x.example\">https://x.example</a> &quot;title&quot;)",
            ),
            (
                "go to https://x.example/p.",
                "go to <a href=\"https://x.example/p\">https://x.example/p</a>.",
            ),
            (
                "(https://x.example/a_(b))",
                "(<a href=\"https://x.example/a_(b)\">https://x.example/a_(b)</a>)",
            ),
            ("xhttps://x.example", "xhttps://x.example"),
            ("https://", "https://"),
            ("http://x.example", "http://x.example"),
            (
                "<b>&amp;</b> \"q\" 'a'",
                "&lt;b&gt;&amp;amp;&lt;/b&gt; &quot;q&quot; &#39;a&#39;",
            ),
            // A quote in a target is refused: the link is its text.
            ("[x](https://a.example/\"onmouseover=)", "x"),
        ];
        for (md, want) in cases {
            assert_eq!(html(md), format!("<p>{want}</p>\n"), "{md:?}");
        }
    }

    #[test]
    fn plain_text() {
        assert_eq!(
            text("# Title\n\nSome **bold** and *it*."),
            "Title\n=====\n\nSome bold and it.\n"
        );
        assert_eq!(text("## Sub"), "Sub\n---\n");
        assert_eq!(text("- a\n- b\n\n2. x\n3. y"), "- a\n- b\n\n2. x\n3. y\n");
        assert_eq!(
            text(
                "[Register](https://id.example/e) or https://id.example/e or [mail](mailto:a@b.example) [a@b.example](mailto:a@b.example)"
            ),
            "Register (https://id.example/e) or https://id.example/e or mail\n(mailto:a@b.example) a@b.example\n"
        );
        assert_eq!(text("[bad](javascript:x)"), "bad\n");
        let long = "word ".repeat(40);
        let t = text(&format!("- {long}"));
        assert!(
            t.lines().all(|l| l.chars().count() <= TEXT_WRAP_COLUMNS),
            "{t}"
        );
        assert!(t.lines().skip(1).all(|l| l.starts_with("  ")), "{t}");
        let url = format!("https://x.example/{}", "a".repeat(100));
        assert_eq!(text(&url), format!("{url}\n"));
    }

    #[test]
    fn refused_links_are_reported() {
        assert_eq!(
            refused_links("[a](https://ok.example) [b](javascript:x) - [c](ftp://x)\n# [d](/rel)"),
            vec!["javascript:x", "ftp://x", "/rel"]
        );
        assert!(refused_links("https://x.example [m](mailto:a@b.example)").is_empty());
    }

    #[test]
    fn nesting_is_capped() {
        let deep = format!("{}x{}", "[".repeat(50), "](https://x.example)".repeat(50));
        let r = render(&deep);
        assert_eq!(r.html.matches("<a ").count(), 1);
        let em = format!("{}x{}", "*a ".repeat(5000), " b*".repeat(5000));
        let _ = render(&em);
    }

    #[test]
    fn pathological_input_is_fast_enough() {
        // Quadratic parsing would take minutes on these; linear takes milliseconds.
        for s in [
            "[".repeat(100_000),
            "**a ".repeat(30_000),
            "](".repeat(50_000),
            "`` ` ".repeat(20_000),
            "_a ".repeat(50_000),
            "https://x".repeat(20_000),
        ] {
            let _ = render(&s);
            let _ = refused_links(&s);
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_never_emits_raw_markup(s in "\\PC*", t in "[-*_`\\[\\]()#!<>&\"'\\\\ a-z0-9.:/\n]{0,200}") {
            for src in [&s, &t] {
                let r = render(src);
                // Every `<` in the output starts one of the known tags.
                let mut rest = r.html.as_str();
                while let Some(p) = rest.find('<') {
                    rest = &rest[p + 1..];
                    let ok = ["h1>", "h2>", "h3>", "/h1>", "/h2>", "/h3>", "p>", "/p>", "ul>", "/ul>", "ol>", "ol start=\"", "/ol>", "li>", "/li>", "strong>", "/strong>", "em>", "/em>", "code>", "/code>", "a href=\"http", "a href=\"mailto:", "/a>"]
                        .iter()
                        .any(|tag| rest.starts_with(tag));
                    prop_assert!(ok, "unexpected markup in {:?}", r.html);
                }
                let _ = variables_in(src);
                let _ = refused_links(src);
            }
        }

        #[test]
        fn escaped_values_round_trip_as_text(v in "[^\\p{C}]{0,80}") {
            let md = substitute_escaped("{{displayName}}", &vars(&[("displayName", &v)]));
            let r = render(&md);
            let want = v.trim();
            if want.is_empty() {
                prop_assert_eq!(r.html, "");
            } else {
                let mut escaped = String::new();
                escape_html_into(want, &mut escaped);
                prop_assert_eq!(r.html, format!("<p>{}</p>\n", escaped));
                prop_assert_eq!(collapse_spaces(&r.text), collapse_spaces(want));
            }
        }

        #[test]
        fn substitution_without_placeholders_is_identity(s in "[^{]*") {
            prop_assert_eq!(substitute(&s, &vars(&[("displayName", "x")])), s);
        }
    }
}
