//! One connection to the directory: connect (+ TLS), bind, paged searches.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::{MakeCritical, PagedResults};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, RequestId, SearchEntry, SearchOptions, StdStream,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{LdapConfig, ObjectSet, Secret};
use crate::entry::{LdapEntry, SkippedEntry, build_entry, merge_attributes};
use crate::error::{LdapError, ResultCode, bind_hint, search_hint};
use crate::filter::{MODIFY_TIMESTAMP, search_filter};
use crate::paging::{PAGED_RESULTS_OID, parse_paged_response};
use crate::time::GeneralizedTime;

/// What a search did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Entries handed to the callback.
    pub entries: u64,
    /// Search requests sent (one per page).
    pub pages: u64,
    /// The newest `modifyTimestamp` among the entries handed over: the watermark for the next
    /// delta import (which asks for `>=` it, so entries changed within that second are read
    /// again). Not a complete watermark when `stopped_early`.
    pub max_modify_timestamp: Option<GeneralizedTime>,
    /// Entries that could not be returned (e.g. no anchor), with the reason. Never silent.
    pub skipped: Vec<SkippedEntry>,
    /// Search result references (referrals to other servers) that were not followed.
    pub references: u64,
    /// The callback asked to stop; the rest of the search was abandoned.
    pub stopped_early: bool,
}

/// One bound connection to the directory.
pub struct Directory {
    pub(crate) ldap: Ldap,
    pub(crate) cfg: LdapConfig,
    pub(crate) url: String,
    driver: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.url)
            .field("bind_dn", &self.cfg.bind_dn)
            .finish_non_exhaustive()
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[derive(Default)]
struct PagedOutcome {
    pages: u64,
    references: u64,
    stopped: bool,
}

impl Directory {
    /// Validate `cfg`, read the password, connect (TCP, then TLS or StartTLS when configured)
    /// and bind. Each step is limited to `timeout_secs`.
    pub async fn connect(cfg: &LdapConfig) -> Result<Self, LdapError> {
        cfg.validate()?;
        let url = cfg.parsed_url()?;
        let url_text = cfg.url.trim().to_owned();
        let secs = cfg.timeout_secs;
        let limit = Duration::from_secs(secs);
        let password = cfg.load_password().await?;
        let ldaps = url.scheme() == "ldaps";
        let tls = if ldaps || cfg.starttls {
            Some(tls_config(cfg).await?)
        } else {
            if !is_loopback(&url) {
                tracing::warn!(
                    url = %url_text,
                    "binding without TLS: the password crosses the network in clear text; use ldaps:// or starttls = true"
                );
            }
            None
        };

        // TCP on its own first, so that "cannot connect" and "TLS failed" are told apart.
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(LdapError::config("url", "has no host")),
        };
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        let tcp = match timeout(limit, TcpStream::connect((host.as_str(), port))).await {
            Err(_) => {
                return Err(LdapError::Timeout {
                    operation: format!("connecting to {url_text}"),
                    secs,
                });
            }
            Ok(Err(error)) => {
                return Err(LdapError::Connect {
                    url: url_text,
                    error,
                });
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let std_stream = tcp.into_std().map_err(|error| LdapError::Connect {
            url: url_text.clone(),
            error,
        })?;
        let mut settings = LdapConnSettings::new().set_std_stream(StdStream::Tcp(std_stream));
        if let Some(config) = tls {
            settings = settings.set_config(config).set_starttls(cfg.starttls);
        }
        let stage = if cfg.starttls {
            "StartTLS with"
        } else if ldaps {
            "TLS handshake with"
        } else {
            "opening the LDAP session with"
        };
        let (conn, ldap) =
            match timeout(limit, LdapConnAsync::with_settings(settings, &url_text)).await {
                Err(_) => {
                    return Err(LdapError::Timeout {
                        operation: format!("{stage} {url_text}"),
                        secs,
                    });
                }
                Ok(Err(e)) if ldaps || cfg.starttls => {
                    return Err(tls_error(&url_text, cfg.starttls, e));
                }
                Ok(Err(e)) => return Err(transport_error(&url_text, stage, e)),
                Ok(Ok(pair)) => pair,
            };
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended with an error");
            }
        });
        let mut dir = Directory {
            ldap,
            cfg: cfg.clone(),
            url: url_text,
            driver,
        };
        dir.bind(&password).await?;
        tracing::debug!(url = %dir.url, bind_dn = %dir.cfg.bind_dn, tls = ldaps || cfg.starttls, "bound to the directory");
        Ok(dir)
    }

    async fn bind(&mut self, password: &Secret) -> Result<(), LdapError> {
        let secs = self.cfg.timeout_secs;
        let operation = format!("bind as {}", self.cfg.bind_dn);
        let bound = timeout(
            Duration::from_secs(secs),
            self.ldap.simple_bind(&self.cfg.bind_dn, password.expose()),
        )
        .await;
        let res = match bound {
            Err(_) => return Err(LdapError::Timeout { operation, secs }),
            Ok(Err(e)) => return Err(transport_error(&self.url, &operation, e)),
            Ok(Ok(res)) => res,
        };
        if res.rc != 0 {
            let code = ResultCode(res.rc);
            return Err(LdapError::Bind {
                bind_dn: self.cfg.bind_dn.clone(),
                code,
                message: res.text,
                hint: bind_hint(code, &self.cfg.password_origin()),
            });
        }
        Ok(())
    }

    /// The configuration this connection was made with.
    pub fn config(&self) -> &LdapConfig {
        &self.cfg
    }

    /// Paged search (RFC 2696) of users or groups. `since`: only entries whose
    /// `modifyTimestamp` is at or after it (delta import); `None`: every entry in scope.
    ///
    /// `attributes` are asked for by name (`"*"` for all user attributes); the anchor attribute
    /// and `modifyTimestamp` are always added. `on_entry` is called for each entry as the pages
    /// arrive, so no more than a page is held here; returning `ControlFlow::Break` abandons the
    /// rest of the search. Entries without a usable anchor go to [`SearchStats::skipped`].
    ///
    /// `timeout_secs` applies to each page (the time `on_entry` takes included).
    pub async fn search(
        &mut self,
        which: ObjectSet,
        attributes: &[&str],
        since: Option<&GeneralizedTime>,
        mut on_entry: impl FnMut(LdapEntry) -> ControlFlow<()>,
    ) -> Result<SearchStats, LdapError> {
        let attrs = requested_attributes(attributes, &self.cfg.anchor_attribute);
        let filter = search_filter(&self.cfg.scope(which).filter, since);
        let anchor_attribute = self.cfg.anchor_attribute.clone();
        let mut stats = SearchStats::default();
        let outcome = self
            .paged(which, &filter, &attrs, |raw| {
                let attributes = merge_attributes(raw.attrs, raw.bin_attrs);
                match build_entry(raw.dn, attributes, &anchor_attribute) {
                    Ok(entry) => {
                        if let Some(t) = &entry.modify_timestamp
                            && stats.max_modify_timestamp.as_ref().is_none_or(|m| t > m)
                        {
                            stats.max_modify_timestamp = Some(t.clone());
                        }
                        stats.entries += 1;
                        on_entry(entry)
                    }
                    Err(skipped) => {
                        tracing::warn!(dn = %skipped.dn, reason = %skipped.reason, "skipping a directory entry");
                        stats.skipped.push(skipped);
                        ControlFlow::Continue(())
                    }
                }
            })
            .await?;
        stats.pages = outcome.pages;
        stats.references = outcome.references;
        stats.stopped_early = outcome.stopped;
        tracing::debug!(
            %which, entries = stats.entries, pages = stats.pages, skipped = stats.skipped.len(),
            delta = since.is_some(), "directory search done"
        );
        Ok(stats)
    }

    /// Every anchor currently in scope (only the anchor attribute is requested): compared
    /// with the anchors imported before, this finds the deleted entries. Entries without a
    /// usable anchor are logged and left out.
    pub async fn anchors(&mut self, which: ObjectSet) -> Result<BTreeSet<String>, LdapError> {
        let anchor_attribute = self.cfg.anchor_attribute.clone();
        let attrs = vec![anchor_attribute.clone()];
        let filter = search_filter(&self.cfg.scope(which).filter, None);
        let mut anchors = BTreeSet::new();
        self.paged(which, &filter, &attrs, |raw| {
            let attributes = merge_attributes(raw.attrs, raw.bin_attrs);
            match build_entry(raw.dn, attributes, &anchor_attribute) {
                Ok(entry) => {
                    anchors.insert(entry.anchor);
                }
                Err(s) => {
                    tracing::warn!(dn = %s.dn, reason = %s.reason, "entry without a usable anchor left out of the anchor scan");
                }
            }
            ControlFlow::Continue(())
        })
        .await?;
        Ok(anchors)
    }

    /// Say goodbye to the server and close the connection.
    pub async fn unbind(mut self) {
        let limit = Duration::from_secs(self.cfg.timeout_secs.min(5));
        match timeout(limit, self.ldap.unbind()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "LDAP unbind failed"),
            Err(_) => tracing::debug!("LDAP unbind timed out"),
        }
        let _ = timeout(limit, &mut self.driver).await;
    }

    /// Run one search page by page, handing each entry to `each`.
    async fn paged(
        &mut self,
        which: ObjectSet,
        filter: &str,
        attrs: &[String],
        mut each: impl FnMut(SearchEntry) -> ControlFlow<()>,
    ) -> Result<PagedOutcome, LdapError> {
        let scope = self.cfg.scope(which).clone();
        let secs = self.cfg.timeout_secs;
        let limit = Duration::from_secs(secs);
        // validate() keeps page_size within 1..=10_000.
        let page_size = i32::try_from(self.cfg.page_size).unwrap_or(i32::MAX);
        let mut out = PagedOutcome::default();
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            out.pages += 1;
            let operation = format!(
                "search of {which} under {} (page {})",
                scope.base_dn, out.pages
            );
            let control = PagedResults {
                size: page_size,
                cookie: cookie.clone(),
            }
            .critical();
            let mut msgid: Option<RequestId> = None;
            let mut page_entries = 0u64;
            let mut references = 0u64;
            let mut stopped = false;
            let ldap = &mut self.ldap;
            let page = async {
                let mut stream = ldap
                    .with_controls(control)
                    .with_search_options(SearchOptions::new().sizelimit(0))
                    .streaming_search(&scope.base_dn, scope.scope.into(), filter, attrs)
                    .await?;
                msgid = Some(stream.ldap_handle().last_id());
                while let Some(item) = stream.next().await? {
                    if item.is_ref() || item.is_intermediate() {
                        references += 1;
                        continue;
                    }
                    page_entries += 1;
                    if each(SearchEntry::construct(item)).is_break() {
                        stopped = true;
                        break;
                    }
                }
                Ok::<_, ldap3::LdapError>(stream.finish().await)
            };
            let result = timeout(limit, page).await;
            out.references += references;
            let res = match result {
                Err(_) => {
                    self.abandon(msgid).await;
                    return Err(LdapError::Timeout { operation, secs });
                }
                Ok(Err(ldap3::LdapError::FilterParsing)) => {
                    return Err(LdapError::config(
                        format!("{which}.filter"),
                        format!("is not a valid LDAP filter (RFC 4515): {filter:?}"),
                    ));
                }
                Ok(Err(e)) => return Err(transport_error(&self.url, &operation, e)),
                Ok(Ok(res)) => res,
            };
            if stopped {
                self.abandon(msgid).await;
                out.stopped = true;
                return Ok(out);
            }
            if res.rc != 0 {
                let code = ResultCode(res.rc);
                if code == ResultCode::UNAVAILABLE_CRITICAL_EXTENSION {
                    return Err(LdapError::PagingUnsupported {
                        url: self.url.clone(),
                        which,
                        detail: format!("the server answered {code} {}", res.text.trim()),
                    });
                }
                return Err(LdapError::Search {
                    which,
                    base_dn: scope.base_dn.clone(),
                    code,
                    hint: search_hint(which, code, &res.matched, &res.refs),
                    message: res.text,
                });
            }
            let Some(control) = res.ctrls.iter().find(|c| c.1.ctype == PAGED_RESULTS_OID) else {
                return Err(LdapError::PagingUnsupported {
                    url: self.url.clone(),
                    which,
                    detail: "the server answered without a paged results control".to_owned(),
                });
            };
            let (_, next) = parse_paged_response(control.1.val.as_deref().unwrap_or_default())
                .map_err(|detail| LdapError::Connection {
                    url: self.url.clone(),
                    operation: operation.clone(),
                    detail: format!("unreadable paged results control from the server: {detail}"),
                })?;
            if next.is_empty() {
                return Ok(out);
            }
            if page_entries == 0 && next == cookie {
                return Err(LdapError::Connection {
                    url: self.url.clone(),
                    operation,
                    detail: "the server sent an empty page and the same paging cookie again; stopping instead of looping".to_owned(),
                });
            }
            cookie = next;
        }
    }

    /// Best effort: ask the server to stop sending the rest of a search.
    async fn abandon(&mut self, msgid: Option<RequestId>) {
        if let Some(id) = msgid {
            let limit = Duration::from_secs(self.cfg.timeout_secs.min(5));
            if let Ok(Err(e)) = timeout(limit, self.ldap.abandon(id)).await {
                tracing::debug!(error = %e, "LDAP abandon failed");
            }
        }
    }
}

/// The caller's attributes (in order, without case-insensitive duplicates) plus the anchor and
/// `modifyTimestamp`, which are operational and only sent when asked for by name.
pub(crate) fn requested_attributes(attributes: &[&str], anchor_attribute: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(attributes.len() + 2);
    for a in attributes
        .iter()
        .copied()
        .chain([anchor_attribute, MODIFY_TIMESTAMP])
    {
        let a = a.trim();
        if !a.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
            out.push(a.to_owned());
        }
    }
    out
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// TLS client settings: the CAs from `ca_file`, else the system's trusted roots; ring.
pub(crate) async fn tls_config(cfg: &LdapConfig) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let ca_error = |detail: String| LdapError::CaFile {
                path: path.clone(),
                detail,
            };
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| ca_error(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_error(format!("not a readable PEM file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_error(format!("a certificate in it is not usable: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ca_error(
                    "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(LdapError::Tls {
                    url: cfg.url.trim().to_owned(),
                    detail: format!("no trusted CA certificates found on this system{why}"),
                    hint: "set ca_file to the PEM file of the CA that issued the directory's certificate".to_owned(),
                });
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Tls {
            url: cfg.url.trim().to_owned(),
            detail: e.to_string(),
            hint: "this build's TLS library is misconfigured".to_owned(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

const TLS_HINT_GENERIC: &str =
    "check ca_file, and that the host in `url` is one the server's certificate names";
const TLS_HINT_NOT_TLS: &str = "is the server speaking TLS on this port? ldaps:// is usually port 636; on port 389 use ldap:// with starttls = true";

fn rustls_hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature | C::BadEncoding => {
                "the server's certificate is not issued by a CA this connector trusts: set ca_file to the PEM file of the CA that issued it"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host in `url`: connect with a host name that the certificate lists"
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the server's certificate has expired (or this machine's clock is wrong)"
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)"
            }
            C::Revoked => "the server's certificate has been revoked",
            _ => TLS_HINT_GENERIC,
        },
        rustls::Error::InvalidMessage(_) => TLS_HINT_NOT_TLS,
        _ => TLS_HINT_GENERIC,
    }
}

/// Explain a failure while setting up TLS (ldaps:// or StartTLS).
fn tls_error(url: &str, starttls: bool, e: ldap3::LdapError) -> LdapError {
    let tls = |detail: String, hint: &str| LdapError::Tls {
        url: url.to_owned(),
        detail,
        hint: hint.to_owned(),
    };
    match e {
        ldap3::LdapError::LdapResult { result } if starttls => tls(
            format!(
                "the server refused StartTLS: {}{}",
                ResultCode(result.rc),
                if result.text.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (server says: {})", result.text.trim())
                }
            ),
            "is TLS configured on the directory? If it offers ldaps://, use that url instead",
        ),
        ldap3::LdapError::Io { source } => {
            if let Some(r) = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                tls(r.to_string(), rustls_hint(r))
            } else if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) {
                tls(
                    format!("the server closed the connection during the TLS handshake ({source})"),
                    TLS_HINT_NOT_TLS,
                )
            } else {
                tls(source.to_string(), TLS_HINT_GENERIC)
            }
        }
        ldap3::LdapError::Rustls { source } => tls(source.to_string(), rustls_hint(&source)),
        ldap3::LdapError::DNSName { source } => tls(
            format!("the host in url is not a valid TLS server name ({source})"),
            "use the host name that the server's certificate lists",
        ),
        ldap3::LdapError::EndOfStream | ldap3::LdapError::ResultRecv { .. } => tls(
            "the server closed the connection before TLS was set up".to_owned(),
            TLS_HINT_NOT_TLS,
        ),
        other => tls(other.to_string(), TLS_HINT_GENERIC),
    }
}

/// A failure of the connection itself (not an LDAP result code).
pub(crate) fn transport_error(url: &str, operation: &str, e: ldap3::LdapError) -> LdapError {
    let detail = match e {
        ldap3::LdapError::EndOfStream
        | ldap3::LdapError::ResultRecv { .. }
        | ldap3::LdapError::OpSend { .. }
        | ldap3::LdapError::IdScrubSend { .. } => "the directory closed the connection".to_owned(),
        ldap3::LdapError::Io { source } => format!("I/O error: {source}"),
        other => other.to_string(),
    };
    LdapError::Connection {
        url: url.to_owned(),
        operation: operation.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SearchScope;

    #[test]
    fn anchor_and_modify_timestamp_are_always_requested() {
        assert_eq!(
            requested_attributes(&["uid", "cn", "mail"], "entryUUID"),
            ["uid", "cn", "mail", "entryUUID", "modifyTimestamp"]
        );
        assert_eq!(
            requested_attributes(&[], "objectGUID"),
            ["objectGUID", "modifyTimestamp"]
        );
        assert_eq!(
            requested_attributes(
                &["*", "entryuuid", "CN", "cn", " ", "ModifyTimestamp"],
                "entryUUID"
            ),
            ["*", "entryuuid", "CN", "ModifyTimestamp"]
        );
    }

    fn cfg(url: &str) -> LdapConfig {
        let mut c = LdapConfig::new(
            url,
            "cn=svc,dc=test",
            "/nonexistent/pw",
            SearchScope::new("ou=people,dc=test"),
            SearchScope::new("ou=groups,dc=test"),
        );
        c.starttls = false;
        c
    }

    #[tokio::test]
    async fn ca_file_problems_name_the_file() {
        let dir = std::env::temp_dir().join(format!("cutover-ldap-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = cfg("ldaps://ldap.example.test");

        let missing = dir.join("missing.pem");
        c.ca_file = Some(missing.clone());
        let e = tls_config(&c).await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} (ca_file)", missing.display())),
            "{e}"
        );

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        c.ca_file = Some(empty);
        let e = tls_config(&c).await.unwrap_err().to_string();
        assert!(e.contains("no certificate in it"), "{e}");

        let good = dir.join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ldap.example.test".to_owned()]).unwrap();
        std::fs::write(&good, ca.cert.pem()).unwrap();
        c.ca_file = Some(good);
        tls_config(&c).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What a fake directory server does with the requests it gets.
    #[derive(Clone, Copy)]
    enum Fake {
        NeverAnswerBind,
        NeverAnswerSearch,
        SearchDoneWithoutPagingControl,
        SearchDoneUnavailableCriticalExtension,
    }

    use crate::fake_ldap::read_message;

    /// An LDAPResult-shaped response (`op`: 0x61 bind, 0x65 search done) to message `id`.
    fn response(id: &[u8], op: u8, rc: u8) -> Vec<u8> {
        let mut body = vec![0x02, id.len() as u8];
        body.extend(id);
        body.extend([op, 0x07, 0x0a, 0x01, rc, 0x04, 0x00, 0x04, 0x00]);
        let mut msg = vec![0x30, body.len() as u8];
        msg.extend(body);
        msg
    }

    /// A one-connection fake directory on a free loopback port; returns a config for it.
    async fn fake_directory(mode: Fake) -> LdapConfig {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            while let Some(msg) = read_message(&mut s).await {
                let (content, _) = crate::paging::element(&msg, 0x30).unwrap();
                let (id, rest) = crate::paging::element(content, 0x02).unwrap();
                let reply = match (rest[0], mode) {
                    (0x60, Fake::NeverAnswerBind) => None,
                    (0x60, _) => Some(response(id, 0x61, 0)),
                    (0x63, Fake::SearchDoneWithoutPagingControl) => Some(response(id, 0x65, 0)),
                    (0x63, Fake::SearchDoneUnavailableCriticalExtension) => {
                        Some(response(id, 0x65, 12))
                    }
                    _ => None,
                };
                if let Some(r) = reply {
                    s.write_all(&r).await.unwrap();
                }
            }
        });
        let mut c = cfg(&format!("ldap://127.0.0.1:{port}"));
        // Set by cargo for every test process: no password file to clean up.
        c.bind_password_file = None;
        c.bind_password_env = Some("CARGO_PKG_NAME".to_owned());
        c.timeout_secs = 1;
        c
    }

    #[tokio::test]
    async fn a_silent_server_times_the_bind_out() {
        let c = fake_directory(Fake::NeverAnswerBind).await;
        let e = Directory::connect(&c).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "bind as cn=svc,dc=test did not finish within 1 s (timeout_secs); is the directory overloaded or unreachable?"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_the_search_page_out() {
        let c = fake_directory(Fake::NeverAnswerSearch).await;
        let mut d = Directory::connect(&c).await.expect("bind answered");
        let e = d
            .search(ObjectSet::Users, &["uid"], None, |_| {
                ControlFlow::Continue(())
            })
            .await
            .unwrap_err();
        assert!(matches!(e, LdapError::Timeout { secs: 1, .. }), "{e}");
        assert!(
            e.to_string().starts_with(
                "search of users under ou=people,dc=test (page 1) did not finish within 1 s"
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_server_without_paging_gets_a_clear_error() {
        for (mode, words) in [
            (
                Fake::SearchDoneWithoutPagingControl,
                "answered without a paged results control",
            ),
            (
                Fake::SearchDoneUnavailableCriticalExtension,
                "answered unavailableCriticalExtension (12)",
            ),
        ] {
            let c = fake_directory(mode).await;
            let mut d = Directory::connect(&c).await.expect("bind answered");
            let e = d.anchors(ObjectSet::Groups).await.unwrap_err();
            let s = e.to_string();
            assert!(matches!(e, LdapError::PagingUnsupported { .. }), "{s}");
            assert!(s.contains("cannot page the search of groups"), "{s}");
            assert!(s.contains("RFC 2696"), "{s}");
            assert!(s.contains(words), "{s}");
        }
    }

    #[test]
    fn tls_failures_get_hints() {
        let unknown = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = tls_error("ldaps://h", false, ldap3::LdapError::Io { source: unknown }).to_string();
        assert!(e.starts_with("TLS with ldaps://h failed"), "{e}");
        assert!(e.contains("set ca_file"), "{e}");

        let name = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let e = tls_error("ldaps://h", false, ldap3::LdapError::Io { source: name }).to_string();
        assert!(e.contains("does not name the host"), "{e}");

        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof");
        let e = tls_error("ldaps://h:389", false, ldap3::LdapError::Io { source: eof }).to_string();
        assert!(e.contains("speaking TLS on this port"), "{e}");
    }
}
