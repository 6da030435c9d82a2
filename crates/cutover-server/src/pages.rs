//! Server-rendered HTML: the sign-in pages and error pages. They work without JavaScript,
//! label every field, and escape every value they show.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Escape text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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
    out
}

/// A complete HTML page with the headers every page carries, the extra origin (if any) its
/// form may end up redirecting to, and whether it runs Cutover's own script.
pub struct Page(String, Option<String>, bool);

impl Page {
    /// Allow this page's form to end in a redirect to `redirect_uri`'s origin: browsers apply
    /// CSP `form-action` to the redirects that follow a form post.
    pub fn with_form_target(mut self, redirect_uri: &str) -> Self {
        self.1 = url::Url::parse(redirect_uri)
            .ok()
            .map(|u| match u.origin() {
                o @ url::Origin::Tuple(..) => o.ascii_serialization(),
                // A native app's private-use scheme has no origin; CSP names it as a scheme source.
                url::Origin::Opaque(_) => format!("{}:", u.scheme()),
            });
        self
    }

    /// Let this page run Cutover's own scripts (`/static/*.js`, same origin only) and fetch
    /// from its own origin: the passkey ceremonies need `navigator.credentials`. Inline
    /// scripts stay forbidden.
    pub fn with_script(mut self) -> Self {
        self.2 = true;
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        let extra = self.1.map(|o| format!(" {o}")).unwrap_or_default();
        let script = if self.2 {
            " script-src 'self'; connect-src 'self';"
        } else {
            ""
        };
        let csp = format!(
            "default-src 'none';{script} style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'"
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        res
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f3f4f6;margin:0;color:#111827}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem 2.25rem;border-radius:.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}\
h1{font-size:1.4rem;margin:0 0 1rem}p{line-height:1.45}label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input[type=text],input[type=email],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #9ca3af;border-radius:.25rem}\
input:focus{outline:2px solid #2563eb;outline-offset:1px}\
button{margin-top:1.25rem;width:100%;padding:.65rem;font-size:1rem;background:#1d4ed8;color:#fff;border:0;border-radius:.25rem;cursor:pointer}\
button.secondary{background:#fff;color:#1d4ed8;border:1px solid #1d4ed8}button.link{width:auto;margin:0;padding:.2rem .5rem;background:#fff;color:#b91c1c;border:1px solid #b91c1c}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.35rem .3rem;border-bottom:1px solid #e5e7eb;font-size:.9rem;vertical-align:top}\
.ok{background:#f0fdf4;border-left:4px solid #15803d;padding:.6rem .8rem;margin:0 0 1rem}.tag{font-size:.75rem;padding:.05rem .35rem;border-radius:.2rem;background:#e0e7ff;white-space:nowrap}\
main:has(.wide){max-width:44rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}\
.error{background:#fef2f2;border-left:4px solid #b91c1c;padding:.6rem .8rem;margin:0 0 1rem}\
.who{color:#374151;margin:0 0 .5rem}.small{font-size:.875rem;color:#4b5563}a{color:#1d4ed8}";

/// The common layout around `body` (already-escaped HTML), for pages of other modules.
pub fn page(title: &str, body: &str) -> Page {
    layout(title, body)
}

/// A whole HTML document of another module's own layout (already escaped: the caller runs
/// every value through [`esc`]), served with the headers every page carries: no script at
/// all, forms post to this origin only. The admin web UI builds its pages this way.
pub fn document(html: String) -> Page {
    Page(html, None, false)
}

fn layout(title: &str, body: &str) -> Page {
    Page(
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} – Cutover</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
            esc(title)
        ),
        None,
        false,
    )
}

fn error_block(error: Option<&str>) -> String {
    error
        .map(|e| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default()
}

/// Step 1: who are you?
pub fn identifier_page(
    txn: &str,
    csrf: &str,
    app_name: &str,
    username: Option<&str>,
    error: Option<&str>,
) -> Page {
    let body = format!(
        "<h1>Sign in</h1><p class=\"small\">to continue to {app}</p>{err}\
         <form method=\"post\" action=\"/login/identifier\" novalidate>\
         <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label for=\"username\">Email or username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{u}\" autocomplete=\"username webauthn\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus{aria}>\
         <button type=\"submit\" id=\"next\">Next</button></form>\
         <form method=\"post\" action=\"/login/passkey\" id=\"passkey-form\" data-options=\"/login/passkey/options\" hidden>\
         <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <input type=\"hidden\" name=\"challenge\" value=\"\"><input type=\"hidden\" name=\"credential\" value=\"\">\
         <button type=\"button\" id=\"passkey-signin\" class=\"secondary\">Sign in with a passkey</button></form>\
         <script src=\"/static/passkey.js\" defer></script>",
        app = esc(app_name),
        err = error_block(error),
        t = esc(txn),
        c = esc(csrf),
        u = esc(username.unwrap_or("")),
        aria = if error.is_some() {
            " aria-describedby=\"error\" aria-invalid=\"true\""
        } else {
            ""
        },
    );
    layout("Sign in", &body).with_script()
}

/// Step 2: prove it.
pub fn password_page(txn: &str, csrf: &str, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<h1>Enter password</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
         <form method=\"post\" action=\"/login/password\">\
         <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <input type=\"text\" name=\"username\" value=\"{u}\" autocomplete=\"username\" hidden aria-hidden=\"true\" tabindex=\"-1\">\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus{aria}>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form>\
         <p class=\"small\"><a href=\"/login?t={t}\">Sign in with a different account</a></p>",
        u = esc(username),
        err = error_block(error),
        t = esc(txn),
        c = esc(csrf),
        aria = if error.is_some() {
            " aria-describedby=\"error\" aria-invalid=\"true\""
        } else {
            ""
        },
    );
    layout("Enter password", &body)
}

/// The Temporary Access Pass page: like the password page, for the pass the helpdesk gave.
pub fn pass_page(txn: &str, csrf: &str, username: &str, error: Option<&str>) -> Page {
    let body = format!(
        "<h1>Enter your Temporary Access Pass</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
         <p class=\"small\">Your helpdesk gave you this pass. Type it as it was given (spaces and dashes do not matter).</p>\
         <form method=\"post\" action=\"/login/password\">\
         <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
         <label for=\"password\">Temporary Access Pass</label>\
         <input type=\"text\" id=\"password\" name=\"password\" autocomplete=\"one-time-code\" autocapitalize=\"characters\" spellcheck=\"false\" required autofocus{aria}>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form>\
         <p class=\"small\"><a href=\"/login?t={t}\">Sign in with a different account</a></p>",
        u = esc(username),
        err = error_block(error),
        t = esc(txn),
        c = esc(csrf),
        aria = if error.is_some() {
            " aria-describedby=\"error\" aria-invalid=\"true\""
        } else {
            ""
        },
    );
    layout("Enter your Temporary Access Pass", &body)
}

/// A dead end explained: what happened and what to do next.
pub fn error_page(title: &str, message: &str) -> Page {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p id=\"message\">{}</p>",
            esc(title),
            esc(message)
        ),
    )
}

/// A dead end with one way forward (for example "Try again").
pub fn error_page_with_action(title: &str, message: &str, href: &str, label: &str) -> Page {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p id=\"message\">{}</p><p><a id=\"action\" href=\"{}\">{}</a></p>",
            esc(title),
            esc(message),
            esc(href),
            esc(label)
        ),
    )
}

/// "Taking you to your organisation's sign-in page": a navigation by meta refresh, with a link
/// for browsers that do not follow it. (A redirect answering the identifier form would be
/// checked against the page's CSP `form-action`, which cannot name every upstream IdP.)
/// `username` and `txn` offer a way back when the name was mistyped.
pub fn upstream_redirect_page(idp_name: &str, url: &str, username: &str, txn: &str) -> Page {
    let u = esc(url);
    Page(
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta http-equiv=\"refresh\" content=\"0;url={u}\"><meta name=\"referrer\" content=\"no-referrer\">\
             <title>Going to your organisation's sign-in page – Cutover</title><style>{STYLE}</style></head><body><main>\
             <h1>Taking you to your organisation's sign-in page</h1>\
             <p class=\"who\" id=\"who\">{who}</p>\
             <p>Your organisation signs you in with <strong>{name}</strong>.</p>\
             <p><a id=\"continue\" href=\"{u}\">Continue to {name}</a></p>\
             <p class=\"small\"><a id=\"other\" href=\"/login?t={t}\">Sign in with a different account</a></p></main></body></html>",
            name = esc(idp_name),
            who = esc(username),
            t = esc(txn),
        ),
        None,
        false,
    )
}

pub fn signed_out_page() -> Page {
    layout(
        "Signed out",
        "<h1>You have signed out</h1><p>You can close this window. To sign in again, go back to the application.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        let evil = "\"><script>alert(1)</script>";
        let Page(html, _, _) = identifier_page(evil, evil, evil, Some(evil), Some(evil));
        assert!(!html.contains("<script>"), "{html}");
        let Page(html, _, _) = password_page(evil, evil, evil, Some(evil));
        assert!(!html.contains("<script>"));
        let Page(html, _, _) = error_page(evil, evil);
        assert!(!html.contains("<script>"));
        let Page(html, _, _) = error_page_with_action(evil, evil, evil, evil);
        assert!(!html.contains("<script>"), "{html}");
        let Page(html, _, _) = upstream_redirect_page(evil, evil, evil, evil);
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn form_action_allows_only_the_clients_origin() {
        let res = password_page("t", "c", "u@c.example", None)
            .with_form_target("https://app.example:8443/cb?x=1")
            .into_response();
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("form-action 'self' https://app.example:8443;"),
            "{csp}"
        );
        let res = password_page("t", "c", "u", None)
            .with_form_target("com.contoso.app:/oauth2redirect")
            .into_response();
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("form-action 'self' com.contoso.app:;"),
            "{csp}"
        );
        let res = error_page("t", "m").into_response();
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("form-action 'self';"), "{csp}");
    }

    #[test]
    fn fields_are_labelled_and_autocomplete_is_set() {
        let Page(html, _, _) = identifier_page("t", "c", "App", None, None);
        assert!(html.contains("<label for=\"username\">"));
        assert!(html.contains("autocomplete=\"username webauthn\""));
        let Page(html, _, _) = password_page("t", "c", "u@c.example", None);
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("autocomplete=\"current-password\""));
    }
}
