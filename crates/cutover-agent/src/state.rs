//! The state directory: `agent.toml` (what the agent is and where it connects), `keys.json`
//! (its private keys, mode 0600) and `server-ca.pem` (the only CA it trusts for the server,
//! when one was given at registration).
//!
//! Every file is written atomically (a temporary file in the same directory, synced, then
//! renamed), so a crash leaves the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use cutover_agent_proto::{AgentKeys, StoredKeys};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where the state lives unless `--state-dir` or `CUTOVER_AGENT_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cutover-agent";
/// The agent's configuration.
pub const CONFIG_FILE: &str = "agent.toml";
/// The agent's private keys ([`StoredKeys`] as JSON, mode 0600).
pub const KEYS_FILE: &str = "keys.json";
/// New keys during a rotation: written before the server is asked, renamed over
/// [`KEYS_FILE`] once it accepted (and picked up by `run` if a crash came in between).
pub const PENDING_KEYS_FILE: &str = "keys.json.new";
/// The server's CA certificate, copied here at registration.
pub const SERVER_CA_FILE: &str = "server-ca.pem";
/// Validations one agent runs at once unless `concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Most validations one agent runs at once.
pub const MAX_CONCURRENCY: usize = 256;
/// Largest state file the agent reads (they are a few hundred bytes).
pub const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;
/// Mode of `keys.json` and `agent.toml`.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of the state directory.
pub const STATE_DIR_MODE: u32 = 0o700;
/// Keys of the `[directory]` section that name files: relative paths are resolved against the
/// directory configuration at registration, and against the state directory when loading.
pub const DIRECTORY_PATH_KEYS: [&str; 2] = ["bind_password_file", "ca_file"];

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}

/// `agent.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AgentConfig {
    /// Cutover's base URL.
    pub server: String,
    /// The id the server gave at registration.
    pub agent_id: Uuid,
    /// The only CA trusted for the server (relative paths: inside the state directory).
    /// Absent: the built-in web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Validations run at once (1..=[`MAX_CONCURRENCY`]).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The label the server shows for this host.
    pub host: String,
    /// The directory the agent checks passwords against
    /// (`cutover_ldap::PasswordCheckConfig`), kept as written.
    pub directory: toml::Table,
}

impl AgentConfig {
    pub fn check(&self) -> Result<()> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            bail!(
                "concurrency: {} is out of range; use 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})",
                self.concurrency
            );
        }
        crate::client::check_server_url(&self.server)?;
        Ok(())
    }

    /// The `[directory]` section as the checker's configuration, with file paths resolved
    /// against `base`.
    pub fn directory_config(&self, base: &Path) -> Result<cutover_ldap::PasswordCheckConfig> {
        parse_directory_table(self.directory.clone(), base)
    }
}

/// Parse a directory section, resolving relative file paths against `base`.
pub fn parse_directory_table(
    mut table: toml::Table,
    base: &Path,
) -> Result<cutover_ldap::PasswordCheckConfig> {
    absolutize_paths(&mut table, base);
    table
        .try_into()
        .map_err(|e| anyhow!("[directory] is not a valid directory configuration: {e}"))
}

/// Rewrite the relative file paths of a directory section against `base`.
pub fn absolutize_paths(table: &mut toml::Table, base: &Path) {
    for key in DIRECTORY_PATH_KEYS {
        if let Some(toml::Value::String(p)) = table.get_mut(key)
            && Path::new(p.as_str()).is_relative()
        {
            *p = base.join(p.as_str()).to_string_lossy().into_owned();
        }
    }
}

/// Read a directory configuration file: either a bare `PasswordCheckConfig` table, or a file
/// whose only key is a `[directory]` table (an `agent.toml` fragment). Relative paths become
/// absolute (against the file's own directory).
pub fn read_directory_file(path: &Path) -> Result<toml::Table> {
    let text = read_capped(path)
        .with_context(|| format!("cannot read the directory configuration {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("{} is not valid TOML: {e}", path.display()))?;
    if table.len() == 1
        && let Some(toml::Value::Table(inner)) = table.get("directory")
    {
        table = inner.clone();
    }
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = fs::canonicalize(base).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(base))
            .unwrap_or_else(|_| base.to_path_buf())
    });
    absolutize_paths(&mut table, &base);
    Ok(table)
}

fn read_capped(path: &Path) -> io::Result<String> {
    let f = File::open(path)?;
    let mut text = String::new();
    f.take(MAX_STATE_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_STATE_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Paths of one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join(KEYS_FILE)
    }
    pub fn pending_keys(&self) -> PathBuf {
        self.root.join(PENDING_KEYS_FILE)
    }
    pub fn server_ca(&self) -> PathBuf {
        self.root.join(SERVER_CA_FILE)
    }

    /// Whether an agent is registered here (either file exists).
    pub fn is_registered(&self) -> bool {
        self.config().exists() || self.keys().exists()
    }

    /// Create the directory (mode 0700) if it does not exist.
    pub fn create(&self) -> Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            b.mode(STATE_DIR_MODE);
        }
        b.create(&self.root).with_context(|| {
            format!(
                "cannot create the state directory {} (run as the agent's user, or choose another with --state-dir)",
                self.root.display()
            )
        })
    }

    pub fn read_config(&self) -> Result<AgentConfig> {
        let path = self.config();
        let text = read_capped(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                anyhow!(
                    "no agent is registered in {} ({} is missing): run `cutover agent register` first, or point --state-dir at the right directory",
                    self.root.display(),
                    CONFIG_FILE
                )
            } else {
                anyhow!("cannot read {}: {e}", path.display())
            }
        })?;
        let cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| anyhow!("{} is not a valid agent configuration: {e}", path.display()))?;
        cfg.check()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(cfg)
    }

    pub fn write_config(&self, cfg: &AgentConfig) -> Result<()> {
        let text = toml::to_string(cfg)
            .map_err(|e| anyhow!("cannot write the agent configuration: {e}"))?;
        let header = "# Written by `cutover agent register`. The [directory] section may be edited;\n# restart the agent afterwards.\n";
        write_atomic(
            &self.config(),
            format!("{header}{text}").as_bytes(),
            SECRET_FILE_MODE,
        )
        .with_context(|| format!("cannot write {}", self.config().display()))
    }

    pub fn read_keys_at(path: &Path) -> Result<AgentKeys> {
        let text = read_capped(path).with_context(|| format!("cannot read {}", path.display()))?;
        let stored: StoredKeys = serde_json::from_str(&text)
            .map_err(|_| anyhow!("{} is not a valid keys file", path.display()))?;
        AgentKeys::from_stored(&stored)
            .map_err(|e| anyhow!("{} holds unusable keys: {e}", path.display()))
    }

    pub fn read_keys(&self) -> Result<AgentKeys> {
        Self::read_keys_at(&self.keys())
    }

    pub fn write_keys_at(path: &Path, keys: &AgentKeys) -> Result<()> {
        let json = serde_json::to_vec_pretty(&keys.to_stored())
            .map_err(|e| anyhow!("cannot encode the keys: {e}"))?;
        write_atomic(path, &json, SECRET_FILE_MODE)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Problems worth a warning: keys readable by others.
    pub fn permission_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for p in [self.keys(), self.root.clone()] {
                if let Ok(m) = fs::metadata(&p)
                    && m.permissions().mode() & 0o077 != 0
                {
                    out.push(format!(
                        "{} is accessible to other users (mode {:o}); run `chmod go-rwx {}`",
                        p.display(),
                        m.permissions().mode() & 0o7777,
                        p.display()
                    ));
                }
            }
        }
        out
    }
}

/// Write `data` to `path` atomically with `mode`: a temporary file in the same directory,
/// flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", Uuid::new_v4().simple()));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The keys a running agent uses, re-read from disk when `keys.json` changes (after
/// `cutover agent rotate-keys` ran next to it).
pub struct KeyRing {
    dir: StateDir,
    current: RwLock<(Arc<AgentKeys>, Option<SystemTime>)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir.root)
            .finish_non_exhaustive()
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl KeyRing {
    pub fn load(dir: &StateDir) -> Result<Self> {
        let stamp = mtime(&dir.keys());
        let keys = dir.read_keys()?;
        Ok(Self {
            dir: dir.clone(),
            current: RwLock::new((Arc::new(keys), stamp)),
        })
    }

    /// For tests: keys that live only in memory (`reload_if_changed` then re-reads the
    /// directory's file if one appears).
    pub fn in_memory(dir: &StateDir, keys: AgentKeys) -> Self {
        Self {
            dir: dir.clone(),
            current: RwLock::new((Arc::new(keys), mtime(&dir.keys()))),
        }
    }

    pub fn current(&self) -> Arc<AgentKeys> {
        let g = self.current.read().unwrap_or_else(|e| e.into_inner());
        g.0.clone()
    }

    /// Re-read `keys.json` if it changed on disk; true when other keys are now in use.
    pub fn reload_if_changed(&self) -> bool {
        let path = self.dir.keys();
        let stamp = mtime(&path);
        {
            let g = self.current.read().unwrap_or_else(|e| e.into_inner());
            if stamp.is_none() || g.1 == stamp {
                return false;
            }
        }
        match self.dir.read_keys() {
            Ok(keys) => {
                let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
                let changed = g.0.public() != keys.public();
                *g = (Arc::new(keys), stamp);
                if changed {
                    tracing::info!(
                        file = %path.display(),
                        "keys.json changed on disk (rotated?): using the new keys"
                    );
                }
                changed
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "keys.json changed but cannot be read; keeping the keys in memory");
                false
            }
        }
    }

    /// The keys of an unfinished rotation (`keys.json.new`), if any.
    pub fn pending(&self) -> Option<AgentKeys> {
        let p = self.dir.pending_keys();
        if !p.exists() {
            return None;
        }
        StateDir::read_keys_at(&p).ok()
    }

    /// Make the pending keys the current ones (the server accepted them).
    pub fn promote_pending(&self) -> Result<()> {
        let keys = StateDir::read_keys_at(&self.dir.pending_keys())?;
        fs::rename(self.dir.pending_keys(), self.dir.keys()).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.dir.pending_keys().display(),
                self.dir.keys().display()
            )
        })?;
        if let Ok(d) = File::open(&self.dir.root) {
            let _ = d.sync_all();
        }
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = (Arc::new(keys), mtime(&self.dir.keys()));
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            let p = std::env::temp_dir().join(format!("cutover-agent-test-{}", Uuid::new_v4()));
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn directory_table() -> toml::Table {
        toml::from_str(
            r#"
url = "ldap://127.0.0.1:1389"
bind_dn = "cn=agent,dc=example,dc=com"
bind_password_file = "bind-password"
starttls = false
timeout_secs = 5
base_dn = "ou=people,dc=example,dc=com"
user_filter = "(&(objectClass=inetOrgPerson)(mail={upn}))"
pool_size = 4
"#,
        )
        .unwrap()
    }

    #[test]
    fn state_dir_round_trip_keeps_keys_private() {
        let tmp = TempDir::new();
        let dir = StateDir::new(tmp.0.join("state"));
        assert!(!dir.is_registered());
        dir.create().unwrap();
        let cfg = AgentConfig {
            server: "https://login.contoso.example".into(),
            agent_id: Uuid::from_u128(7),
            ca_file: Some(SERVER_CA_FILE.into()),
            concurrency: 8,
            host: "agent-1.corp".into(),
            directory: directory_table(),
        };
        dir.write_config(&cfg).unwrap();
        let keys = AgentKeys::generate().unwrap();
        StateDir::write_keys_at(&dir.keys(), &keys).unwrap();
        assert!(dir.is_registered());

        assert_eq!(dir.read_config().unwrap(), cfg);
        assert_eq!(dir.read_keys().unwrap().public(), keys.public());
        let d = cfg.directory_config(&dir.root).unwrap();
        assert_eq!(
            d.bind_password_file.as_deref(),
            Some(dir.root.join("bind-password").as_path())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.keys()), 0o600);
            assert_eq!(mode(&dir.config()), 0o600);
            assert_eq!(mode(&dir.root), 0o700);
            assert!(dir.permission_warnings().is_empty());
            fs::set_permissions(dir.keys(), fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(dir.permission_warnings().len(), 1);
        }
        // Overwriting replaces atomically and leaves no temporary file behind.
        let other = AgentKeys::generate().unwrap();
        StateDir::write_keys_at(&dir.keys(), &other).unwrap();
        assert_eq!(dir.read_keys().unwrap().public(), other.public());
        let names: Vec<String> = fs::read_dir(&dir.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // No private key material in the config file.
        let text = fs::read_to_string(dir.config()).unwrap();
        assert!(!text.contains(&other.to_stored().encryption_secret));
    }

    #[test]
    fn config_errors_are_explained() {
        let tmp = TempDir::new();
        let dir = StateDir::new(&tmp.0);
        let e = dir.read_config().unwrap_err().to_string();
        assert!(e.contains("cutover agent register"), "{e}");
        fs::write(dir.config(), "server = 1").unwrap();
        assert!(dir.read_config().is_err());
        let mut cfg = AgentConfig {
            server: "http://login.contoso.example".into(),
            agent_id: Uuid::from_u128(7),
            ca_file: None,
            concurrency: 8,
            host: "h".into(),
            directory: directory_table(),
        };
        let e = format!("{:#}", cfg.check().unwrap_err());
        assert!(e.contains("http://"), "{e}");
        cfg.server = "http://127.0.0.1:8080".into();
        cfg.check().unwrap();
        cfg.concurrency = 0;
        assert!(cfg.check().is_err());
        cfg.concurrency = MAX_CONCURRENCY + 1;
        assert!(cfg.check().is_err());
    }

    #[test]
    fn directory_file_forms() {
        let tmp = TempDir::new();
        let bare = tmp.0.join("bare.toml");
        fs::write(&bare, toml::to_string(&directory_table()).unwrap()).unwrap();
        let t = read_directory_file(&bare).unwrap();
        let p = t.get("bind_password_file").unwrap().as_str().unwrap();
        assert!(Path::new(p).is_absolute(), "{p}");
        let mut wrapped = toml::Table::new();
        wrapped.insert("directory".into(), toml::Value::Table(directory_table()));
        let w = tmp.0.join("wrapped.toml");
        fs::write(&w, toml::to_string(&wrapped).unwrap()).unwrap();
        assert_eq!(read_directory_file(&w).unwrap(), t);
    }

    #[test]
    fn key_ring_follows_rotation_on_disk() {
        let tmp = TempDir::new();
        let dir = StateDir::new(&tmp.0);
        let a = AgentKeys::generate().unwrap();
        StateDir::write_keys_at(&dir.keys(), &a).unwrap();
        let ring = KeyRing::load(&dir).unwrap();
        assert!(!ring.reload_if_changed());
        assert!(ring.pending().is_none());
        let b = AgentKeys::generate().unwrap();
        StateDir::write_keys_at(&dir.pending_keys(), &b).unwrap();
        assert_eq!(ring.pending().unwrap().public(), b.public());
        ring.promote_pending().unwrap();
        assert_eq!(ring.current().public(), b.public());
        assert!(!dir.pending_keys().exists());
        let c = AgentKeys::generate().unwrap();
        StateDir::write_keys_at(&dir.keys(), &c).unwrap();
        // A rewrite within the file system's timestamp granularity may keep the mtime.
        File::options()
            .write(true)
            .open(dir.keys())
            .unwrap()
            .set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(ring.reload_if_changed());
        assert_eq!(ring.current().public(), c.public());
    }
}
