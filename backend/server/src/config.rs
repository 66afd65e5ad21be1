//! The one typed configuration: defaults ← `orrery.toml` ← `ORRERY_*` environment ← flags.
//! Validated once at start; `orrery config` prints the effective result with secrets redacted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything Orrery can be told. Each field documents its default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where `orrery up` keeps its private PostgreSQL cluster, the admin token and its lock.
    /// Default: `.orrery` in the current directory.
    pub data_dir: PathBuf,
    /// The address the HTTP API and console listen on. Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The URL people and workers use to reach this server (links, cookie security).
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    pub database: DatabaseConfig,
    pub console: ConsoleConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub scheduler: SchedulerSection,
    pub workers: WorkersSection,
    pub tls: TlsConfig,
}

/// HTTPS served by Orrery itself (the console, the API and the workers' gRPC on one port). Behind
/// a load balancer that terminates TLS, leave it off.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (the server's certificate first). Default: none (plain HTTP).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate. Default: none.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSection {
    /// Seconds an attempt's lease lasts without a heartbeat from its worker (which renews every
    /// fifth of it). A worker cut off longer than this stops its attempts itself. Default: 30.
    pub lease_secs: u64,
    /// Slots of the worker `orrery up` runs in pool `default` (0: none). Default: 8.
    pub local_slots: u32,
}

impl Default for WorkersSection {
    fn default() -> Self {
        Self { lease_secs: 30, local_slots: 8 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSection {
    /// Seconds a scheduler's shard lease lasts without renewal: how long a dead scheduler's shards
    /// wait before another takes them. Default: 10.
    pub lease_ttl_secs: u64,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self { lease_ttl_secs: 10 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The catalog database, which is also shard 1: `postgres://USER:PASSWORD@HOST:PORT/DB`.
    /// Default: none, and `orrery up` starts a private cluster under `data_dir`; the other roles
    /// (`server`, `scheduler`, `migrate`) require it.
    pub url: Option<String>,
    /// Additional shard databases (shards 2, 3, ...), in order. Default: none.
    pub shards: Vec<String>,
    /// Most connections per database pool; each database has two, one for the queue's
    /// transactions (claims, reports) and one for the rest. Default: 16.
    pub max_connections: u32,
    /// Seconds a query waits for a free connection before failing. Default: 10.
    pub acquire_timeout_secs: u64,
    /// Where `orrery up` finds PostgreSQL's `initdb` and `postgres` for its private cluster.
    /// Default: on PATH, else the newest /usr/lib/postgresql/*/bin.
    pub embedded_bin_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The directory holding the built console (`pkg/orrery.js`, `.wasm`, `.css`).
    /// Default: `target/site` (where `make build` puts it).
    pub site_root: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Minutes of inactivity after which a console session ends. Default: 480 (8 hours).
    pub session_idle_minutes: u32,
    /// Send cookies with `Secure` (HTTPS only). Default: true when `public_url` is https.
    pub secure_cookies: Option<bool>,
    /// Failed sign-ins allowed per email within the window. Default: 5.
    pub max_failures_per_email: u32,
    /// Failed sign-ins allowed per client address within the window. Default: 50.
    pub max_failures_per_address: u32,
    /// The window for counting failed sign-ins, in seconds. Default: 900.
    pub failure_window_secs: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON lines when stderr is not a terminal, readable text when it is.
    Auto,
    Json,
    Text,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto`, `json` or `text`. Default: `auto`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `orrery=debug,sqlx=warn`). Default: `info`. `RUST_LOG` overrides it.
    pub filter: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The first administrator `orrery up` creates on an empty database. Default: `admin@orrery.local`.
    pub email: String,
    /// Their password. Default: generated and printed once.
    pub password: Option<String>,
    /// The first tenant's slug. Default: `default`.
    pub tenant: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".orrery"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database: DatabaseConfig::default(),
            console: ConsoleConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            scheduler: SchedulerSection::default(),
            workers: WorkersSection::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, shards: Vec::new(), max_connections: 16, acquire_timeout_secs: 10, embedded_bin_dir: None }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { site_root: PathBuf::from("target/site") }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_minutes: 480,
            secure_cookies: None,
            max_failures_per_email: 5,
            max_failures_per_address: 50,
            failure_window_secs: 900,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Auto, filter: "info".into() }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { email: "admin@orrery.local".into(), password: None, tenant: "default".into() }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseOverrides>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DatabaseOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Sections whose fields may be set as `ORRERY_<SECTION>_<FIELD>`.
const SECTIONS: [&str; 8] = ["database", "console", "auth", "log", "admin", "scheduler", "workers", "tls"];
const TOP_LEVEL: [&str; 3] = ["data_dir", "listen", "public_url"];

/// `ORRERY_DATABASE_URL` → `database.url`; `ORRERY_DATA_DIR` → `data_dir`. Variables that are
/// not configuration (`ORRERY_TOKEN`, `ORRERY_SERVER` for the CLI) are left alone.
fn env_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    if TOP_LEVEL.contains(&key.as_str()) {
        return Some(key);
    }
    SECTIONS
        .iter()
        .find_map(|s| key.strip_prefix(s).and_then(|rest| rest.strip_prefix('_')).map(|field| format!("{s}.{field}")))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (when given, it must exist; otherwise `./orrery.toml` if present),
    /// then the environment, then `flags`; and validates the result.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.is_file() => {
                return Err(ConfigError::Invalid(format!("the config file {} does not exist", f.display())));
            }
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("orrery.toml")),
        }
        let env = Env::prefixed("ORRERY_").filter_map(|k| env_key(k.as_str()).map(Into::into));
        let cfg: Config = fig
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| ConfigError::Figment(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for url in self.database.url.iter().chain(&self.database.shards) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad(format!(
                    "database URL {} is not a PostgreSQL URL: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    store::redact(url)
                ));
            }
        }
        if !self.database.shards.is_empty() && self.database.url.is_none() {
            return bad("database.shards needs database.url (the catalog, which is shard 1)".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections must be at least 1".into());
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return bad(format!("public_url {u:?} must start with http:// or https://"));
        }
        if model::Email::parse(&self.admin.email).is_err() {
            return bad(format!("admin.email {:?} is not an email address", self.admin.email));
        }
        if let Err(e) = model::Slug::parse_named(&self.admin.tenant, "admin.tenant") {
            return bad(e.to_string());
        }
        if let Some(p) = &self.admin.password
            && p.chars().count() < service::auth::MIN_PASSWORD_LEN
        {
            return bad(format!(
                "admin.password (ORRERY_ADMIN_PASSWORD) must have at least {} characters",
                service::auth::MIN_PASSWORD_LEN
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return bad("tls.cert_file and tls.key_file go together: set both (HTTPS) or neither (HTTP)".into());
        }
        if self.workers.lease_secs < 3 {
            return bad("workers.lease_secs must be at least 3".into());
        }
        if self.scheduler.lease_ttl_secs < 2 {
            return bad("scheduler.lease_ttl_secs must be at least 2".into());
        }
        if self.auth.session_idle_minutes == 0 {
            return bad("auth.session_idle_minutes must be at least 1".into());
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        self.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    pub fn secure_cookies(&self) -> bool {
        self.auth.secure_cookies.unwrap_or_else(|| self.public_url().starts_with("https://"))
    }

    /// The effective configuration as TOML, passwords replaced by `***`.
    pub fn redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database.url = c.database.url.as_deref().map(store::redact);
        c.database.shards = c.database.shards.iter().map(|u| store::redact(u)).collect();
        if c.admin.password.is_some() {
            c.admin.password = Some("***".into());
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render the configuration: {e}"))
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature is figment's, not ours")]
mod tests {
    use super::*;

    #[test]
    fn environment_names_map_to_fields() {
        assert_eq!(env_key("DATABASE_URL").as_deref(), Some("database.url"));
        assert_eq!(env_key("DATABASE_MAX_CONNECTIONS").as_deref(), Some("database.max_connections"));
        assert_eq!(env_key("DATA_DIR").as_deref(), Some("data_dir"));
        assert_eq!(env_key("ADMIN_PASSWORD").as_deref(), Some("admin.password"));
        assert_eq!(env_key("TOKEN"), None);
        assert_eq!(env_key("SERVER"), None);
    }

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "orrery.toml",
                "listen = \"127.0.0.1:9000\"\n[database]\nmax_connections = 4\nurl = \"postgres://f@h/db\"\n",
            )?;
            jail.set_env("ORRERY_DATABASE_MAX_CONNECTIONS", "7");
            jail.set_env("ORRERY_TOKEN", "not config");
            let flags = FlagOverrides {
                database: Some(DatabaseOverrides { url: Some("postgres://flag@h/db".into()) }),
                ..FlagOverrides::default()
            };
            let c = Config::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.database.max_connections, 7);
            assert_eq!(c.database.url.as_deref(), Some("postgres://flag@h/db"));
            assert_eq!(c.data_dir, PathBuf::from(".orrery"));
            Ok(())
        });
    }

    #[test]
    fn a_typo_in_the_file_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("orrery.toml", "listn = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ORRERY_DATABASE_URL", "mysql://root:pw@h/db");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err().to_string();
            assert!(err.contains("not a PostgreSQL URL") && !err.contains("pw@"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn printed_config_hides_passwords() {
        let mut c = Config::default();
        c.database.url = Some("postgres://u:hunter22@h/db".into());
        c.admin.password = Some("correct horse".into());
        let text = c.redacted_toml();
        assert!(!text.contains("hunter22") && !text.contains("correct horse"), "{text}");
        assert!(text.contains("postgres://u:***@h/db"), "{text}");
    }
}
