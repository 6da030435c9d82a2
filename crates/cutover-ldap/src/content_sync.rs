//! RFC 4533 content synchronisation, refreshOnly mode: "what changed since this cookie".
//!
//! Where the directory offers it (OpenLDAP's syncprov overlay), a delta import asks for the
//! entries added or modified since the cookie of the previous run instead of filtering on
//! `modifyTimestamp`: the directory tracks changes by its change sequence numbers, so there
//! is no clock and no overlap window involved. Deletions reported by the directory are passed
//! on too; the sync server still runs its complete anchor scan, so a directory that reports
//! deletions only through a present phase loses nothing.
//!
//! The anchor must be `entryUUID`: the sync state control names entries by their entryUUID.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use ldap3::controls::parse_syncinfo;
use ldap3::controls::{
    ControlType, EntryState, MakeCritical, RefreshMode, SyncDone, SyncInfo, SyncRequest, SyncState,
};
use ldap3::{Scope, SearchEntry, SearchOptions};
use tokio::time::timeout;

use crate::config::ObjectSet;
use crate::directory::{Directory, requested_attributes};
use crate::entry::{LdapEntry, SkippedEntry, build_entry, merge_attributes};
use crate::error::{LdapError, ResultCode};

/// The Sync Request control's OID, as the root DSE lists it in `supportedControl`.
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// `e-syncRefreshRequired`: the cookie is too old for the directory's change history.
const SYNC_REFRESH_REQUIRED: u32 = 4096;

/// One change reported by content synchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Added or modified since the cookie, with the requested attributes.
    Changed(LdapEntry),
    /// Deleted since the cookie (the anchor, i.e. the entryUUID).
    Deleted(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentSyncOutcome {
    /// The cookie to send next time (None when the directory sent none: keep the old one).
    pub cookie: Option<Vec<u8>>,
    pub changed: u64,
    pub deleted: u64,
    /// Entries the directory reported as present and unchanged.
    pub present: u64,
    pub skipped: Vec<SkippedEntry>,
}

/// entryUUID as the directory prints it: 8-4-4-4-12 lower-case hex.
pub fn uuid_text(raw: &[u8]) -> Option<String> {
    if raw.len() != 16 {
        return None;
    }
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// ldap3's parsers for these controls panic on malformed input; a broken or hostile directory
/// must produce an error instead.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

impl Directory {
    /// Does the directory offer RFC 4533 content synchronisation (root DSE `supportedControl`)?
    pub async fn offers_content_sync(&mut self) -> Result<bool, LdapError> {
        let secs = self.cfg.timeout_secs;
        let url = self.url.clone();
        let op = "reading the root DSE (supportedControl)";
        let search = self
            .ldap
            .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"]);
        let (entries, _res) = match timeout(Duration::from_secs(secs), search).await {
            Err(_) => {
                return Err(LdapError::Timeout {
                    operation: op.into(),
                    secs,
                });
            }
            Ok(Err(e)) => return Err(crate::directory::transport_error(&url, op, e)),
            Ok(Ok(r)) => r
                .success()
                .map_err(|e| crate::directory::transport_error(&url, op, e))?,
        };
        Ok(entries.into_iter().any(|e| {
            let e = SearchEntry::construct(e);
            e.attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("supportedControl"))
                .flat_map(|(_, v)| v)
                .any(|v| v == SYNC_REQUEST_OID)
        }))
    }

    /// What changed in `which` since `cookie` (None: everything, as adds). `on_event` gets each
    /// change as it arrives; the outcome carries the cookie for next time.
    pub async fn content_sync(
        &mut self,
        which: ObjectSet,
        attributes: &[&str],
        cookie: Option<&[u8]>,
        mut on_event: impl FnMut(SyncEvent) -> ControlFlow<()>,
    ) -> Result<ContentSyncOutcome, LdapError> {
        let anchor_attribute = self.cfg.anchor_attribute.clone();
        if !anchor_attribute.eq_ignore_ascii_case("entryUUID") {
            return Err(LdapError::ContentSync {
                url: self.url.clone(),
                detail: format!(
                    "content synchronisation names entries by entryUUID, but anchor_attribute is {anchor_attribute}"
                ),
            });
        }
        let scope = self.cfg.scope(which).clone();
        let attrs = requested_attributes(attributes, &anchor_attribute);
        let secs = self.cfg.timeout_secs;
        let url = self.url.clone();
        let operation = format!("content synchronisation of {which} under {}", scope.base_dn);
        let fail = |detail: String| LdapError::ContentSync {
            url: url.clone(),
            detail,
        };
        let control = SyncRequest {
            mode: RefreshMode::RefreshOnly,
            cookie: cookie.map(<[u8]>::to_vec),
            reload_hint: false,
        }
        .critical();
        let mut out = ContentSyncOutcome::default();
        let mut failure: Option<LdapError> = None;
        let ldap = &mut self.ldap;
        let run = async {
            let mut stream = ldap
                .with_controls(control)
                .with_search_options(SearchOptions::new().sizelimit(0))
                .streaming_search(&scope.base_dn, scope.scope.into(), &scope.filter, &attrs)
                .await?;
            while let Some(item) = stream.next().await? {
                if item.is_ref() {
                    continue;
                }
                if item.is_intermediate() {
                    match guarded(|| parse_syncinfo(item)) {
                        Some(SyncInfo::NewCookie(c)) => out.cookie = Some(c),
                        Some(
                            SyncInfo::RefreshDelete { cookie, .. }
                            | SyncInfo::RefreshPresent { cookie, .. },
                        ) => {
                            if cookie.is_some() {
                                out.cookie = cookie;
                            }
                        }
                        Some(SyncInfo::SyncIdSet {
                            cookie,
                            refresh_deletes,
                            sync_uuids,
                        }) => {
                            if cookie.is_some() {
                                out.cookie = cookie;
                            }
                            if refresh_deletes {
                                for raw in sync_uuids {
                                    if let Some(anchor) = uuid_text(&raw) {
                                        out.deleted += 1;
                                        let _ = on_event(SyncEvent::Deleted(anchor));
                                    }
                                }
                            } else {
                                out.present += sync_uuids.len() as u64;
                            }
                        }
                        None => {
                            failure = Some(fail("a Sync Info message could not be parsed".into()));
                            break;
                        }
                    }
                    continue;
                }
                let state = item
                    .1
                    .iter()
                    .find(|c| matches!(c.0, Some(ControlType::SyncState)))
                    .map(|c| guarded(|| c.1.parse::<SyncState>()));
                let state = match state {
                    Some(Some(s)) => s,
                    Some(None) => {
                        failure = Some(fail("a Sync State control could not be parsed".into()));
                        break;
                    }
                    None => {
                        failure = Some(fail("an entry came without its Sync State control".into()));
                        break;
                    }
                };
                if state.cookie.is_some() {
                    out.cookie = state.cookie.clone();
                }
                match state.state {
                    EntryState::Present => out.present += 1,
                    EntryState::Delete => {
                        if let Some(anchor) = uuid_text(&state.entry_uuid) {
                            out.deleted += 1;
                            let _ = on_event(SyncEvent::Deleted(anchor));
                        }
                    }
                    EntryState::Add | EntryState::Modify => {
                        let raw = SearchEntry::construct(item);
                        let attributes = merge_attributes(raw.attrs, raw.bin_attrs);
                        match build_entry(raw.dn, attributes, &anchor_attribute) {
                            Ok(entry) => {
                                out.changed += 1;
                                let _ = on_event(SyncEvent::Changed(entry));
                            }
                            Err(skipped) => out.skipped.push(skipped),
                        }
                    }
                }
            }
            Ok::<_, ldap3::LdapError>(stream.finish().await)
        };
        let res = match timeout(Duration::from_secs(secs), run).await {
            Err(_) => return Err(LdapError::Timeout { operation, secs }),
            Ok(Err(e)) => return Err(crate::directory::transport_error(&url, &operation, e)),
            Ok(Ok(res)) => res,
        };
        if let Some(f) = failure {
            return Err(f);
        }
        if res.rc == SYNC_REFRESH_REQUIRED {
            return Err(LdapError::SyncRefreshRequired { url });
        }
        if res.rc != 0 {
            return Err(fail(format!(
                "the search ended with {} {}",
                ResultCode(res.rc),
                res.text.trim()
            )));
        }
        for c in &res.ctrls {
            if matches!(c.0, Some(ControlType::SyncDone)) {
                match guarded(|| c.1.parse::<SyncDone>()) {
                    Some(done) => {
                        if done.cookie.is_some() {
                            out.cookie = done.cookie;
                        }
                    }
                    None => return Err(fail("the Sync Done control could not be parsed".into())),
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_uuids_print_like_the_directory() {
        let raw: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_text(&raw).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(uuid_text(&raw[..15]), None);
    }

    #[test]
    fn a_panicking_parser_is_an_error() {
        assert_eq!(guarded(|| 1), Some(1));
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r: Option<()> = guarded(|| panic!("malformed"));
        std::panic::set_hook(hook);
        assert_eq!(r, None);
    }
}
