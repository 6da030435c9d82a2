//! The passkey enrolment page (`/my/enrol`): where a campaign e-mail's link lands. It detects
//! the device family from the browser's User-Agent, shows that family's steps and pitfalls
//! (editable Markdown files, `guidance/` in this crate as the defaults), the user's passkeys so
//! far (with a nudge towards a second one), and the same "Add a passkey" form as Security info,
//! behind the same gate (a recent strong sign-in).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cutover_core::device::{DeviceFamily, family_of};
use cutover_core::methods_policy::RegistrationGate;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::PageError;
use crate::pages::{self, esc};
use crate::{AppState, RequestCtx};

/// The page's path; campaign e-mails link here (`?c=<campaign>&w=<wave>`).
pub const ENROL_PATH: &str = "/my/enrol";

/// Largest guidance file accepted (bytes).
pub const MAX_GUIDANCE_BYTES: usize = 16 * 1024;

/// The built-in guidance, one Markdown file per device family key.
const DEFAULTS: [(&str, &str); 11] = [
    ("iPhone", include_str!("../../guidance/iPhone.md")),
    (
        "androidSamsung",
        include_str!("../../guidance/androidSamsung.md"),
    ),
    (
        "androidXiaomi",
        include_str!("../../guidance/androidXiaomi.md"),
    ),
    (
        "androidHuawei",
        include_str!("../../guidance/androidHuawei.md"),
    ),
    (
        "androidPixel",
        include_str!("../../guidance/androidPixel.md"),
    ),
    (
        "androidOther",
        include_str!("../../guidance/androidOther.md"),
    ),
    ("windows", include_str!("../../guidance/windows.md")),
    ("macOS", include_str!("../../guidance/macOS.md")),
    ("linux", include_str!("../../guidance/linux.md")),
    ("securityKey", include_str!("../../guidance/securityKey.md")),
    ("unknown", include_str!("../../guidance/unknown.md")),
];

/// Enrolment guidance per device family: the built-in files, each replaced by a file of the
/// same name in the operator's folder when there is one.
#[derive(Debug, Clone)]
pub struct Guidance {
    files: BTreeMap<String, String>,
    /// Which families come from the operator's folder.
    pub overridden: Vec<String>,
}

impl Default for Guidance {
    fn default() -> Self {
        Self {
            files: DEFAULTS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            overridden: Vec::new(),
        }
    }
}

impl Guidance {
    /// The defaults, with `<family>.md` files from `dir` replacing them. Refuses a file that is
    /// too large, not UTF-8, or that uses a template variable the page does not know, naming it.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut g = Self::default();
        let Some(dir) = dir else { return Ok(g) };
        if !dir.is_dir() {
            return Err(format!(
                "the guidance folder {} does not exist or is not a folder",
                dir.display()
            ));
        }
        for family in DeviceFamily::ALL {
            let key = family.as_str();
            let path = dir.join(format!("{key}.md"));
            if !path.exists() {
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read guidance file {}: {e}", path.display()))?;
            if bytes.len() > MAX_GUIDANCE_BYTES {
                return Err(format!(
                    "guidance file {} is {} bytes; the limit is {MAX_GUIDANCE_BYTES}",
                    path.display(),
                    bytes.len()
                ));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("guidance file {} is not UTF-8 text", path.display()))?;
            let vars = cutover_core::markdown::variables_in(&text)
                .map_err(|e| format!("guidance file {}: {e}", path.display()))?;
            if let Some(v) = vars.iter().find(|v| v.as_str() != "helpdesk") {
                return Err(format!(
                    "guidance file {}: {{{{{v}}}}} is not filled in on the enrolment page; only {{{{helpdesk}}}} is",
                    path.display()
                ));
            }
            g.files.insert(key.to_owned(), text);
            g.overridden.push(key.to_owned());
        }
        Ok(g)
    }

    /// The guidance of `family` (the `unknown` file when it has none) as its title and HTML.
    pub fn render(&self, family: DeviceFamily, helpdesk: Option<&str>) -> (String, String) {
        let src = self
            .files
            .get(family.as_str())
            .or_else(|| self.files.get("unknown"))
            .map(String::as_str)
            .unwrap_or_default();
        let mut vars = BTreeMap::new();
        vars.insert(
            "helpdesk".to_owned(),
            helpdesk.unwrap_or("your helpdesk").to_owned(),
        );
        let src = cutover_core::markdown::substitute_escaped(src, &vars);
        // The first `# ` line is the family's title; the rest is rendered below it.
        let (title, rest) = match src.split_once('\n') {
            Some((first, rest)) if first.starts_with("# ") => {
                (first.trim_start_matches("# ").trim().to_owned(), rest)
            }
            _ => (family.label().to_owned(), src.as_str()),
        };
        let title = title.replace('\\', "");
        (title, cutover_core::markdown::render(rest).html)
    }
}

#[derive(Deserialize)]
pub(crate) struct EnrolQuery {
    /// Campaign id (from the e-mail link).
    c: Option<String>,
    /// Wave id.
    w: Option<String>,
    /// The user's choice of device family when detection got it wrong.
    device: Option<String>,
    done: Option<String>,
    error: Option<String>,
    sig: Option<String>,
}

/// `GET /my/enrol`.
pub(crate) async fn enrol_get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Query(q): Query<EnrolQuery>,
) -> Result<Response, PageError> {
    let mut return_to = url::Url::parse("http://x/my/enrol").map_err(PageError::internal)?;
    {
        let mut qp = return_to.query_pairs_mut();
        for (k, v) in [("c", &q.c), ("w", &q.w), ("device", &q.device)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty() && v.len() <= 64) {
                qp.append_pair(k, v);
            }
        }
    }
    let here = match return_to.query() {
        Some(qs) if !qs.is_empty() => format!("{ENROL_PATH}?{qs}"),
        _ => ENROL_PATH.to_owned(),
    };
    let me = match crate::my::require_session(&state, &headers, &here).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    let now = state.now();
    let detected = family_of(
        ctx.user_agent.as_deref().unwrap_or(""),
        ctx.ua_model.as_deref(),
        false,
    );
    let chosen = q.device.as_deref().and_then(DeviceFamily::parse);
    let family = chosen.unwrap_or(detected);
    let helpdesk = state.config.campaigns.helpdesk.clone();
    let (title, guide_html) = state
        .config
        .campaigns
        .guidance
        .render(family, helpdesk.as_deref());

    // The campaign and wave from the link, when they exist (a stale link still shows the page).
    let mut context = String::new();
    if let (Some(c), Some(w)) = (
        q.c.as_deref().and_then(|c| Uuid::parse_str(c).ok()),
        q.w.as_deref().and_then(|w| Uuid::parse_str(w).ok()),
    ) && let Ok(Some(row)) = state.store.get_campaign(c).await
        && let Ok(doc) = super::Document::from_row(&row)
        && let Some(wave) = doc.campaign.waves.iter().find(|x| x.id == w)
    {
        context = format!(
            "<p class=\"who\" id=\"campaign-context\" data-campaign=\"{cid}\" data-wave=\"{wid}\"><strong>{c}</strong> · {wn}: passkeys are required from <strong>{d}</strong>.</p>",
            cid = c,
            wid = w,
            c = esc(&doc.campaign.display_name),
            wn = esc(&wave.display_name),
            d = esc(&super::day_label(wave.enforcement_date)),
        );
    }

    let passkeys = state.store.list_passkeys(me.user.user.id).await?;
    let count = passkeys.len();
    let device_bound_only = count == 1 && passkeys.iter().all(|p| !p.backed_up);
    let status = match count {
        0 => "<p id=\"enrol-status\" data-passkeys=\"0\">You have <strong>no passkey</strong> yet. Adding one takes about a minute.</p>".to_owned(),
        1 if device_bound_only => "<div class=\"ok\" id=\"enrol-status\" data-passkeys=\"1\" role=\"status\">You have one passkey, and it is kept on one device only. <strong>Add a second one</strong> on another device (a phone, a computer or a security key), so that losing that device does not lock you out.</div>".to_owned(),
        1 => "<div class=\"ok\" id=\"enrol-status\" data-passkeys=\"1\" role=\"status\">You have a passkey — you are ready. A second one on another device is a good backup.</div>".to_owned(),
        n => format!("<div class=\"ok\" id=\"enrol-status\" data-passkeys=\"{n}\" role=\"status\">You have {n} passkeys — you are ready.</div>"),
    };
    let mut list = String::new();
    if count > 0 {
        list.push_str("<ul id=\"my-passkeys\">");
        for p in &passkeys {
            let fam =
                DeviceFamily::parse(&p.device_family).map_or("Unknown device", DeviceFamily::label);
            list.push_str(&format!(
                "<li>{} <span class=\"small\">({}, {})</span></li>",
                esc(&p.name),
                esc(fam),
                if p.backed_up {
                    "synced"
                } else {
                    "this device only"
                }
            ));
        }
        list.push_str("</ul>");
    }

    let allowed = matches!(
        crate::my::registration_gate(&me, now),
        RegistrationGate::Allowed { .. }
    );
    let add = if let Some(why) = &state.passkeys.unavailable {
        tracing::debug!(reason = %why, "passkeys unavailable on the enrolment page");
        "<p class=\"error\">Passkeys are not available on this server yet. Your administrator has been told in the server log.</p>".to_owned()
    } else if allowed {
        format!(
            "<form method=\"post\" action=\"/my/security/passkeys\" id=\"add-passkey-form\" data-options=\"/my/security/passkeys/options\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"challenge\" value=\"\"><input type=\"hidden\" name=\"credential\" value=\"\">\
             <input type=\"hidden\" name=\"back\" value=\"{back}\">\
             <label for=\"passkey-name\">Name of the new passkey</label>\
             <input type=\"text\" id=\"passkey-name\" name=\"name\" maxlength=\"{max}\" value=\"{suggest}\" required>\
             <button type=\"submit\" id=\"add-passkey\">Add a passkey</button></form>",
            c = esc(&me.csrf),
            back = esc(&here),
            max = crate::passkeys::MAX_PASSKEY_NAME_CHARS,
            suggest = esc(family.label()),
        )
    } else {
        crate::my::gate_block(&me, now)
    };
    let error = crate::my::signed_error(&state, q.error.as_deref(), q.sig.as_deref());
    let notice = match (q.done.as_deref(), error) {
        (Some("added"), _) => "<div class=\"ok\" id=\"notice\" role=\"status\">Your passkey was added. Next time you sign in, choose <strong>Sign in with a passkey</strong>.</div>".to_owned(),
        (_, Some(e)) => format!(
            "<div class=\"error\" id=\"error\" role=\"alert\">{}</div>",
            esc(&e.chars().take(300).collect::<String>())
        ),
        _ => String::new(),
    };
    let mut choices = String::new();
    for f in DeviceFamily::ALL {
        if f == family {
            continue;
        }
        let mut link = url::Url::parse("http://x/my/enrol").map_err(PageError::internal)?;
        {
            let mut qp = link.query_pairs_mut();
            if let Some(c) = q.c.as_deref().filter(|c| c.len() <= 64) {
                qp.append_pair("c", c);
            }
            if let Some(w) = q.w.as_deref().filter(|w| w.len() <= 64) {
                qp.append_pair("w", w);
            }
            qp.append_pair("device", f.as_str());
        }
        choices.push_str(&format!(
            "<li><a href=\"{}?{}\">{}</a></li>",
            ENROL_PATH,
            esc(link.query().unwrap_or("")),
            esc(f.label())
        ));
    }
    let detected_note = if chosen.is_some() && chosen != Some(detected) {
        format!(
            "You chose <strong>{}</strong> (this browser looks like {}).",
            esc(family.label()),
            esc(detected.label())
        )
    } else {
        format!("This looks like <strong>{}</strong>.", esc(family.label()))
    };
    let body = format!(
        "<div class=\"wide\"><h1>Set up your passkey</h1><p class=\"who\" id=\"who\">{upn}</p>{context}{notice}\
         <p>A passkey lets you sign in with your face, fingerprint or screen lock instead of a password. It cannot be phished or guessed.</p>\
         {status}{list}\
         <section id=\"guidance\" data-family=\"{fam}\" aria-labelledby=\"guidance-title\"><h2 id=\"guidance-title\">{title}</h2>\
         <p class=\"small\" id=\"detected\" data-detected=\"{det}\">{detected_note}</p>{guide_html}</section>\
         {add}\
         <details id=\"other-devices\"><summary>Not your device? Show the steps for another one</summary><ul>{choices}</ul></details>\
         <p class=\"small\"><a href=\"/my/security\">Security info</a> lists and removes your passkeys.</p>\
         </div><script src=\"/static/passkey.js\" defer></script>",
        upn = esc(me.user.user.upn.as_str()),
        fam = esc(family.as_str()),
        det = esc(detected.as_str()),
        title = esc(&title),
    );
    Ok(pages::page("Set up your passkey", &body)
        .with_script()
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_guidance_with_steps_and_pitfalls() {
        let g = Guidance::default();
        for f in DeviceFamily::ALL {
            let (title, html) = g.render(f, Some("the IT desk"));
            assert!(!title.is_empty(), "{f:?}");
            assert!(
                html.contains("<ol>") || html.contains("<ul>"),
                "{f:?}: {html}"
            );
            assert!(html.contains("Steps"), "{f:?}");
            assert!(html.contains("Watch out for"), "{f:?}");
            assert!(!html.contains("{{"), "{f:?}: a variable was left: {html}");
        }
        let (_, samsung) = g.render(DeviceFamily::parse("androidSamsung").unwrap(), None);
        assert!(samsung.contains("Samsung Pass"));
        let (_, xiaomi) = g.render(DeviceFamily::parse("androidXiaomi").unwrap(), None);
        assert!(xiaomi.contains("second passkey"));
        let (_, iphone) = g.render(DeviceFamily::IPhone, None);
        assert!(iphone.contains("iCloud Keychain"));
        let (_, windows) = g.render(DeviceFamily::Windows, None);
        assert!(windows.contains("Windows Hello"));
        // Huawei: the passkey stays on the phone, so a second one is needed.
        let (_, huawei) = g.render(DeviceFamily::parse("androidHuawei").unwrap(), None);
        assert!(huawei.contains("on the device only"), "{huawei}");
        assert!(huawei.contains("second passkey"), "{huawei}");
        // An authenticator app's codes are not a passkey.
        for f in [
            DeviceFamily::IPhone,
            DeviceFamily::parse("androidPixel").unwrap(),
        ] {
            let (_, html) = g.render(f, None);
            assert!(html.contains("authenticator app"), "{f:?}: {html}");
            assert!(html.contains("not a passkey"), "{f:?}: {html}");
        }
    }

    #[test]
    fn the_helpdesk_is_escaped_and_files_in_the_folder_replace_defaults() {
        let g = Guidance::default();
        let (_, html) = g.render(DeviceFamily::Unknown, Some("<b>desk</b>"));
        assert!(html.contains("&lt;b&gt;desk"), "{html}");
        assert!(!html.contains("<b>desk"), "{html}");

        let dir = std::env::temp_dir().join(format!("cutover-guidance-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("windows.md"),
            "# Our laptops\n\n## Steps\n1. Use the *Company Portal*.\n",
        )
        .unwrap();
        let g = Guidance::load(Some(&dir)).unwrap();
        assert_eq!(g.overridden, vec!["windows".to_owned()]);
        let (title, html) = g.render(DeviceFamily::Windows, None);
        assert_eq!(title, "Our laptops");
        assert!(html.contains("<em>Company Portal</em>"), "{html}");
        // Other families keep the defaults.
        assert!(
            g.render(DeviceFamily::MacOs, None)
                .1
                .contains("iCloud Keychain")
        );

        std::fs::write(dir.join("linux.md"), vec![b'a'; MAX_GUIDANCE_BYTES + 1]).unwrap();
        let err = Guidance::load(Some(&dir)).unwrap_err();
        assert!(err.contains("linux.md") && err.contains("limit"), "{err}");
        std::fs::write(dir.join("linux.md"), vec![b'a'; MAX_GUIDANCE_BYTES]).unwrap();
        assert!(Guidance::load(Some(&dir)).is_ok());
        std::fs::write(dir.join("linux.md"), [0xff, 0xfe]).unwrap();
        assert!(Guidance::load(Some(&dir)).unwrap_err().contains("UTF-8"));
        std::fs::write(dir.join("linux.md"), "Hello {{nope}}").unwrap();
        assert!(Guidance::load(Some(&dir)).unwrap_err().contains("linux.md"));
        std::fs::write(dir.join("linux.md"), "Hello {{firstName}}").unwrap();
        let err = Guidance::load(Some(&dir)).unwrap_err();
        assert!(err.contains("only {{helpdesk}}"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Guidance::load(Some(Path::new("/nonexistent/cutover"))).is_err());
    }
}
