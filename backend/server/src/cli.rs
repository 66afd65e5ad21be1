//! The command line: roles (`up`, `server`, `migrate`), `config`, and client verbs that talk to a
//! running server over its REST API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use api_types::{
    Connection, CreateProject, CreateTenant, CreateToken, CreatedToken, ErrorBody, InviteMember, Invited, Me, Member,
    Page, Project, PutConnection, Tenant,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Config, DatabaseOverrides, FlagOverrides, LogFormat};

#[derive(Parser, Debug)]
#[command(name = "orrery", version, about = "Orrery: a distributed workflow scheduler", propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./orrery.toml when present.
    #[arg(long, global = true, env = "ORRERY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format: auto (JSON unless a terminal), json or text.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RoleArgs {
    /// Where `up` keeps its private database and admin token. Default: .orrery
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve HTTP on. Default: 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// PostgreSQL URL of the catalog (shard 1). Also ORRERY_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

impl RoleArgs {
    pub fn overrides(&self) -> FlagOverrides {
        FlagOverrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            database: self.database_url.clone().map(|url| DatabaseOverrides { url: Some(url) }),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything in one process: a private PostgreSQL (unless --database-url), API, console.
    Up(RoleArgs),
    /// The stateless API and console role (needs a database URL). Run N of them behind a balancer.
    Server {
        #[command(flatten)]
        role: RoleArgs,
        /// Apply pending migrations at start instead of refusing to run on an old schema.
        #[arg(long)]
        migrate: bool,
    },
    /// The scheduler role: fires the schedules of the shards it leases, reaps expired leases,
    /// enforces timeouts, drives backfills. Run several for high availability.
    Scheduler(RoleArgs),
    /// Bring every configured database to this binary's schema.
    Migrate(RoleArgs),
    /// The worker role: connects out to a server and runs tasks of its pool.
    Worker(WorkerArgs),
    /// Print the effective configuration (passwords redacted).
    Config(RoleArgs),
    /// Who am I on the server?
    Whoami(ClientArgs),
    /// Tenants (client verbs).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Members of a tenant (client verbs).
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Projects of a tenant (client verbs).
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Database connections of a tenant, for `sql` tasks (client verbs).
    Connection {
        #[command(subcommand)]
        command: ConnectionCommand,
    },
    /// Your API tokens (client verbs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Workflows (client verbs).
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Runs (client verbs).
    Run {
        #[command(subcommand)]
        command: RunCommand,
    },
    /// Cron expressions (offline: no server needed).
    Cron {
        #[command(subcommand)]
        command: CronCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowCommand {
    /// Create or update a workflow from a YAML or JSON file; prints its id and version.
    Apply {
        /// The document (`-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The project (key). Default: `default`, created on first use.
        #[arg(long, default_value = "default")]
        project: String,
        /// Why this version.
        #[arg(long, short = 'm', default_value = "")]
        message: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunCommand {
    /// Start a run; with --wait, follow it and exit non-zero unless it succeeds.
    Trigger {
        /// Workflow id or name.
        workflow: String,
        /// A parameter, `key=value` (the value is parsed as JSON when it is JSON).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Repeating a trigger with the same key returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A run with its tasks.
    Get {
        run: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    Cancel {
        run: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A task's log; with --follow, until the attempt ends.
    Logs {
        run: String,
        task: String,
        /// Attempt number. Default: the latest.
        #[arg(long)]
        attempt: Option<i32>,
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum CronCommand {
    /// The next fire times of an expression.
    Next {
        expr: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// `unix` or `quartz`.
        #[arg(long, default_value = "unix")]
        dialect: String,
        /// Start after this instant (RFC 3339). Default: now.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The server to connect to (https:// for TLS).
    #[arg(long, env = "ORRERY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// PEM file of certificates to trust for an https server besides the public roots: an
    /// internal CA, or the server's own self-signed certificate.
    #[arg(long, env = "ORRERY_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// A worker token (`orrery token create --worker NAME`).
    #[arg(long, env = "ORRERY_WORKER_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, default_value = "default")]
    pub pool: String,
    #[arg(long, default_value = "")]
    pub region: String,
    /// A label tasks may require, `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Attempts run at once.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// CPU cores offered. Default: the machine's.
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory offered ("8Gi", "512Mi"). Default: the machine's.
    #[arg(long)]
    pub memory: Option<String>,
    /// Where attempts get their working directories.
    #[arg(long, default_value = ".orrery/work")]
    pub work_dir: PathBuf,
    /// Seconds between SIGTERM and SIGKILL when an attempt is stopped.
    #[arg(long, default_value_t = 10)]
    pub kill_grace_secs: u64,
    /// Log bytes kept per attempt.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub log_cap: u64,
    /// Do not put attempts in cgroups (no memory/CPU limits), even where the host allows it.
    #[arg(long)]
    pub no_cgroups: bool,
    /// A directory of exec plugins (docs/PLUGINS.md): each executable in it runs `plugin` tasks
    /// of its name, and the worker takes only plugin tasks it has.
    #[arg(long, env = "ORRERY_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Run every task as this OS user (the worker itself runs as root): tasks cannot touch the
    /// worker's files or each other's processes. Default: the worker's own user.
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    List(ClientArgs),
    /// Create a tenant (platform admins).
    Create {
        slug: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invite by email with a role; prints a new user's initial password once.
    Invite {
        email: String,
        #[arg(long)]
        role: model::Role,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    Create {
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCommand {
    /// The tenant's connections (passwords shown as `***`).
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create or replace a connection; `sql` tasks name it in `config.connection`.
    Put {
        name: String,
        /// `postgres://user:password@host:5432/db` or `mysql://user:password@host:3306/db`.
        #[arg(long, env = "ORRERY_CONNECTION_URL", hide_env_values = true)]
        url: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a connection; tasks that name it fail until it exists again.
    Rm {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; prints its secret once.
    Create {
        name: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// A worker token (platform admins): lets a worker connect, not a person act.
        #[arg(long)]
        worker: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The server to talk to.
    #[arg(long, env = "ORRERY_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API token. Default: ORRERY_TOKEN, else <data-dir>/admin.token written by `orrery up`.
    #[arg(long, env = "ORRERY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where to look for admin.token when no token is given.
    #[arg(long, default_value = ".orrery", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// PEM file of certificates to trust for an https server besides the public roots.
    #[arg(long, env = "ORRERY_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// A small REST client for the verbs.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("admin.token");
                std::fs::read_to_string(&path).map(|t| t.trim().to_owned()).with_context(|| {
                    format!(
                        "no API token: set ORRERY_TOKEN or --token, or run `orrery up` here (it writes {})",
                        path.display()
                    )
                })?
            }
        };
        let mut http = reqwest::Client::builder().user_agent(concat!("orrery-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("--ca-cert {}: not a PEM certificate ({e})", path.display()))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build()?;
        Ok(Client { http, base: args.server.trim_end_matches('/').to_owned(), token })
    }

    pub(crate) async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let bytes = self.send_raw(req).await?;
        serde_json::from_slice(&bytes).context("the server's answer is not what this CLI expects (version mismatch?)")
    }

    /// Sends with the token; an error status becomes the server's message.
    async fn send_raw(&self, req: reqwest::RequestBuilder) -> anyhow::Result<axum::body::Bytes> {
        let res = req.bearer_auth(&self.token).send().await.map_err(|e| {
            // `{:#}`: with its causes (refused, an untrusted certificate, ...).
            let e = anyhow::Error::from(e);
            anyhow::anyhow!(
                "cannot reach the server at {}: {e:#}. Is it running? (--server / ORRERY_SERVER)",
                self.base
            )
        })?;
        let status = res.status();
        let bytes = res.bytes().await?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => anyhow::anyhow!("{} ({}, {})", e.message, e.code, status.as_u16()),
                Err(_) => anyhow::anyhow!("the server answered {status}"),
            });
        }
        Ok(bytes)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body)).await
    }

    /// DELETE; the server answers 204 with no body.
    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send_raw(self.http.delete(format!("{}{path}", self.base))).await.map(|_| ())
    }
}

pub(crate) fn print<T: Serialize>(output: Output, value: &T, table: impl FnOnce(&T)) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => table(value),
    }
    Ok(())
}

/// Runs a client verb. Returns false when the command is not a client verb.
pub async fn run_client(command: &Command) -> anyhow::Result<bool> {
    match command {
        Command::Whoami(c) => {
            let me: Me = Client::new(c)?.get("/api/v1/me").await?;
            print(c.output, &me, |me| {
                println!(
                    "{} <{}>{}",
                    me.user.display_name,
                    me.user.email,
                    if me.user.platform_admin { " (platform admin)" } else { "" }
                );
                for t in &me.tenants {
                    println!("  {:<24} {}", t.slug, t.role);
                }
            })?;
        }
        Command::Tenant { command: TenantCommand::List(c) } => {
            let page: Page<Tenant> = Client::new(c)?.get("/api/v1/tenants").await?;
            print(c.output, &page, |p| {
                println!("{:<24} {:<32} ROLE", "SLUG", "NAME");
                for t in &p.items {
                    println!("{:<24} {:<32} {}", t.slug, t.name, t.role);
                }
            })?;
        }
        Command::Tenant { command: TenantCommand::Create { slug, name, client } } => {
            let req = CreateTenant {
                slug: model::Slug::parse_named(slug, "tenant slug")?,
                name: model::DisplayName::parse_named(name, "name")?,
            };
            let t: Tenant = Client::new(client)?.post("/api/v1/tenants", &req).await?;
            print(client.output, &t, |t| println!("created tenant {} ({})", t.slug, t.id))?;
        }
        Command::Member { command: MemberCommand::List { tenant, client } } => {
            let page: Page<Member> = Client::new(client)?.get(&format!("/api/v1/tenants/{tenant}/members")).await?;
            print(client.output, &page, |p| {
                println!("{:<36} {:<32} ROLE", "USER", "EMAIL");
                for m in &p.items {
                    println!("{:<36} {:<32} {}", m.user_id, m.email, m.role);
                }
            })?;
        }
        Command::Member { command: MemberCommand::Invite { email, role, tenant, client } } => {
            let req = InviteMember { email: model::Email::parse(email)?, role: *role, display_name: None };
            let inv: Invited = Client::new(client)?.post(&format!("/api/v1/tenants/{tenant}/members"), &req).await?;
            print(client.output, &inv, |i| {
                println!("{} is {} in {tenant}", i.member.email, i.member.role);
                if let Some(p) = &i.initial_password {
                    println!("initial password (shown once): {p}");
                }
            })?;
        }
        Command::Project { command: ProjectCommand::List { tenant, client } } => {
            let page: Page<Project> = Client::new(client)?.get(&format!("/api/v1/tenants/{tenant}/projects")).await?;
            print(client.output, &page, |p| {
                println!("{:<24} {:<32} ID", "KEY", "NAME");
                for p in &p.items {
                    println!("{:<24} {:<32} {}", p.slug, p.name, p.id);
                }
            })?;
        }
        Command::Project { command: ProjectCommand::Create { slug, name, description, tenant, client } } => {
            let req = CreateProject {
                slug: model::Slug::parse_named(slug, "project key")?,
                name: model::DisplayName::parse_named(name, "name")?,
                description: description.clone(),
            };
            let p: Project = Client::new(client)?.post(&format!("/api/v1/tenants/{tenant}/projects"), &req).await?;
            print(client.output, &p, |p| println!("created project {} ({})", p.slug, p.id))?;
        }
        Command::Connection { command: ConnectionCommand::List { tenant, client } } => {
            let page: Page<Connection> =
                Client::new(client)?.get(&format!("/api/v1/tenants/{tenant}/connections")).await?;
            print(client.output, &page, |p| {
                println!("{:<24} {:<9} URL", "NAME", "KIND");
                for c in &p.items {
                    println!("{:<24} {:<9} {}", c.name, c.kind, c.url);
                }
            })?;
        }
        Command::Connection { command: ConnectionCommand::Put { name, url, description, tenant, client } } => {
            let req = PutConnection { url: url.clone(), description: description.clone() };
            let c: Connection =
                Client::new(client)?.put(&format!("/api/v1/tenants/{tenant}/connections/{name}"), &req).await?;
            print(client.output, &c, |c| println!("connection {} ({}) is {}", c.name, c.kind, c.url))?;
        }
        Command::Connection { command: ConnectionCommand::Rm { name, tenant, client } } => {
            Client::new(client)?.delete(&format!("/api/v1/tenants/{tenant}/connections/{name}")).await?;
            if client.output == Output::Table {
                println!("deleted connection {name}");
            }
        }
        Command::Token { command: TokenCommand::Create { name, expires_in_days, worker, client } } => {
            let req = CreateToken { name: name.clone(), expires_in_days: *expires_in_days };
            let path = if *worker { "/api/v1/worker-tokens" } else { "/api/v1/tokens" };
            let t: CreatedToken = Client::new(client)?.post(path, &req).await?;
            print(client.output, &t, |t| println!("{}", t.secret))?;
        }
        Command::Workflow { command } => return crate::client::workflow(command).await.map(|()| true),
        Command::Run { command } => return crate::client::run(command).await.map(|()| true),
        Command::Cron { command: CronCommand::Next { expr, tz, dialect, after, count, output } } => {
            let dialect = match dialect.as_str() {
                "unix" => model::cron::Dialect::Unix,
                "quartz" => model::cron::Dialect::Quartz,
                other => anyhow::bail!("unknown dialect {other:?}: use unix or quartz"),
            };
            let after = match after {
                Some(a) => chrono::DateTime::parse_from_rfc3339(a)
                    .with_context(|| format!("--after {a:?} is not an RFC 3339 instant (like 2026-01-31T08:00:00Z)"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let p = service::workflows::preview_expression(expr, dialect, tz, after, *count)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let zone: chrono_tz::Tz = p.timezone.parse().map_err(|_| anyhow::anyhow!("bad zone"))?;
            print(*output, &p, |p| {
                println!("# {} ({}), {}", p.expression, p.description, p.timezone);
                for t in &p.next {
                    println!("{}", t.with_timezone(&zone).to_rfc3339());
                }
            })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Loads the configuration for a role, with its flags on top.
pub fn load_config(cli: &Cli, role: &RoleArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), &role.overrides())?;
    if let Some(f) = cli.log_format {
        config.log.format = f;
    }
    Ok(config)
}
