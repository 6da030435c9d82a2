//! Whether an existing browser SSO session may answer an authorization request
//! (OpenID Connect Core §3.1.2.1: `prompt`, `max_age`).

use crate::Timestamp;
use crate::authorize::Prompt;

/// What Cutover knows about the browser's SSO session, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    pub user_enabled: bool,
    /// False when the request's `login_hint` names someone other than the session's user:
    /// the client asked for another account, so the session cannot answer for it.
    pub matches_login_hint: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionDecision {
    /// Issue a code from the session without showing a page.
    Reuse,
    /// Show the sign-in pages.
    Prompt,
    /// `prompt=none` and the session cannot answer: return `login_required`.
    LoginRequired,
}

pub fn decide_session(
    prompt: Prompt,
    max_age: Option<i64>,
    session: Option<SessionFacts>,
    now: Timestamp,
) -> SessionDecision {
    let usable = session.is_some_and(|s| {
        s.user_enabled
            && s.matches_login_hint
            && now < s.expires_at
            && max_age.is_none_or(|m| now.secs_since(s.auth_time) <= m)
    });
    match (prompt, usable) {
        (Prompt::Login, _) => SessionDecision::Prompt,
        (Prompt::None, true) | (Prompt::Default, true) => SessionDecision::Reuse,
        (Prompt::None, false) => SessionDecision::LoginRequired,
        (Prompt::Default, false) => SessionDecision::Prompt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(auth: i64, exp: i64, enabled: bool) -> Option<SessionFacts> {
        Some(SessionFacts {
            auth_time: Timestamp::from_secs(auth),
            expires_at: Timestamp::from_secs(exp),
            user_enabled: enabled,
            matches_login_hint: true,
        })
    }

    #[test]
    fn a_hint_for_another_account_is_not_answered_from_the_session() {
        let now = Timestamp::from_secs(1000);
        let other = facts(900, 2000, true).map(|f| SessionFacts {
            matches_login_hint: false,
            ..f
        });
        assert_eq!(
            decide_session(Prompt::Default, None, other, now),
            SessionDecision::Prompt
        );
        assert_eq!(
            decide_session(Prompt::None, None, other, now),
            SessionDecision::LoginRequired
        );
    }

    #[test]
    fn session_table() {
        use SessionDecision as D;
        let now = Timestamp::from_secs(1000);
        let table = [
            (Prompt::Default, None, None, D::Prompt),
            (Prompt::Default, None, facts(900, 2000, true), D::Reuse),
            (Prompt::Default, None, facts(900, 1000, true), D::Prompt), // expired exactly now
            (Prompt::Default, None, facts(900, 2000, false), D::Prompt),
            (Prompt::Default, Some(100), facts(900, 2000, true), D::Reuse), // max_age edge: 100 s old
            (Prompt::Default, Some(99), facts(900, 2000, true), D::Prompt),
            (Prompt::Default, Some(0), facts(1000, 2000, true), D::Reuse),
            (Prompt::Login, None, facts(900, 2000, true), D::Prompt),
            (Prompt::None, None, facts(900, 2000, true), D::Reuse),
            (Prompt::None, None, None, D::LoginRequired),
            (
                Prompt::None,
                Some(10),
                facts(900, 2000, true),
                D::LoginRequired,
            ),
        ];
        for (prompt, max_age, session, want) in table {
            assert_eq!(
                decide_session(prompt, max_age, session, now),
                want,
                "{prompt:?} {max_age:?} {session:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn prompt_login_always_prompts(auth in 0i64..10_000, exp in 0i64..10_000, now in 0i64..10_000, enabled: bool, max_age in proptest::option::of(0i64..5000)) {
            let d = decide_session(Prompt::Login, max_age, facts(auth, exp, enabled), Timestamp::from_secs(now));
            prop_assert_eq!(d, SessionDecision::Prompt);
        }

        #[test]
        fn prompt_none_never_shows_a_page(auth in 0i64..10_000, exp in 0i64..10_000, now in 0i64..10_000, enabled: bool) {
            let d = decide_session(Prompt::None, None, facts(auth, exp, enabled), Timestamp::from_secs(now));
            prop_assert_ne!(d, SessionDecision::Prompt);
        }
    }
}
