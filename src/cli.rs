//! The command line: `serve`, `verify`, `listen`, `portal-link`, `openapi`.

use crate::api::{router, AppState};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use hallway_domain::{Catalog, DurationMs, Policy};
use hallway_runtime::{Config, Engine, MasterKey, TransportConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// hallway-webhooks: signed webhook delivery with retries, on an embedded database.
#[derive(Debug, Parser)]
#[command(name = "hallway-webhooks", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines on stderr look: `text` for people, `json` (one object a line) for
    /// collectors.
    #[arg(long, global = true, env = "HALLWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The shape of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The environment variable `verify` and `listen` read the signing secret from: a secret on a
/// command line shows in `ps` to every user of the machine.
pub const SECRET_ENV: &str = "HALLWAY_WEBHOOK_SECRET";

/// Set once at startup: whether notices go out as JSON log lines.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a notice for the operator on stderr: plain text, or a log line under `--log-format
/// json` so that every stderr line parses.
fn notice(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("{message}");
    } else {
        crate::log_writer::flush();
        eprintln!("{message}");
    }
}

/// Prints a fatal error on stderr, as [`notice`] does.
fn fatal(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        crate::log_writer::flush();
        eprintln!("error: {message}");
    }
}

/// The subcommands.
// Parsed once at startup: the size of `serve`'s flags costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the delivery engine.
    Serve(ServeArgs),
    /// Check an `X-Hallway-Signature` header against a body and a secret.
    Verify(VerifyArgs),
    /// Run a local receiver that verifies and prints each delivery.
    Listen(ListenArgs),
    /// Print a single-use link that opens an account's webhooks page (asks the running server).
    PortalLink(crate::portal::cli::PortalLinkArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
}

/// Retry delays, one per attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delays(pub Vec<DurationMs>);

/// Parses durations such as `250ms`, `30s`, `5m`, `2h`, `1d` or `1h30m` (humantime's
/// grammar), to whole milliseconds.
pub fn parse_duration(s: &str) -> Result<DurationMs, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: a duration needs a unit (ms, s, m, h or d)"));
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    u64::try_from(d.as_millis())
        .map(DurationMs)
        .map_err(|_| format!("{s:?}: too long"))
}

/// Parses a size such as `512MiB`, `2GiB`, `300MB` or `64KiB` to bytes. A bare number is
/// refused, as a duration's is: is `512` bytes or MiB?
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" => {
            return Err(format!(
                "{s:?}: a size needs a unit (KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a size is a whole number and a unit"))?;
    n.checked_mul(unit_bytes)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Parses a comma-separated list of durations, one per attempt.
pub fn parse_delays(s: &str) -> Result<Delays, String> {
    let delays = s
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > 50 {
        return Err("give between 1 and 50 retry delays".into());
    }
    Ok(Delays(delays))
}

/// Flags of `serve`; each has an environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the engine keeps its data.
    #[arg(long, env = "HALLWAY_DATA_DIR", default_value = "./hallway-data")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "HALLWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The admin token; generated and saved in the data dir on first start when not given.
    #[arg(long, env = "HALLWAY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Delay before each attempt, comma-separated.
    #[arg(long, env = "HALLWAY_RETRY_DELAYS", default_value = "0s,1m,5m,30m,2h", value_parser = parse_delays)]
    pub retry_delays: Delays,
    /// Time a receiver has to answer.
    #[arg(long, env = "HALLWAY_ATTEMPT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub attempt_timeout: DurationMs,
    /// Consecutive failed attempts that disable a webhook.
    #[arg(long, env = "HALLWAY_AUTO_DISABLE_AFTER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auto_disable_after: u32,
    /// Webhooks an account may have.
    #[arg(long, env = "HALLWAY_MAX_WEBHOOKS", default_value_t = 5)]
    pub max_webhooks_per_account: u32,
    /// Largest event body accepted.
    #[arg(long, env = "HALLWAY_MAX_PAYLOAD_BYTES", default_value_t = 1_048_576)]
    pub max_payload_bytes: usize,
    /// Accept `http://` webhook URLs.
    #[arg(long, env = "HALLWAY_ALLOW_HTTP", value_parser = BoolishValueParser::new())]
    pub allow_http: bool,
    /// Deliver to loopback, private and link-local targets.
    #[arg(long, env = "HALLWAY_ALLOW_PRIVATE_TARGETS", value_parser = BoolishValueParser::new())]
    pub allow_private_targets: bool,
    /// Attempts under way at once.
    #[arg(long, env = "HALLWAY_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Requests to one webhook under way at once: one endpoint gets at most this many divided
    /// by its response time.
    #[arg(long, env = "HALLWAY_MAX_IN_FLIGHT_PER_WEBHOOK", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_per_webhook: u32,
    /// Extra trusted root certificates (PEM file), for private CAs and tests.
    #[arg(long, env = "HALLWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The key that seals webhook secrets at rest (64 hex digits); created (mode 0600) when
    /// missing. Defaults to `<data-dir>/master.key`.
    #[arg(long, env = "HALLWAY_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// A master key used before a rotation: secrets sealed with it are resealed at startup.
    #[arg(long, env = "HALLWAY_PREVIOUS_MASTER_KEY_FILE")]
    pub previous_master_key_file: Option<PathBuf>,
    /// API connections open at once; past it the longest-idle one is closed, or new ones wait.
    #[arg(long, env = "HALLWAY_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Time a client has to send a request head, from its first byte.
    #[arg(long, env = "HALLWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: DurationMs,
    /// Time a keep-alive API connection may wait for its next request.
    #[arg(long, env = "HALLWAY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: DurationMs,
    /// Time one API request may take, its body's upload included.
    #[arg(long, env = "HALLWAY_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: DurationMs,
    /// Time open API requests get to finish after SIGTERM before they are closed.
    #[arg(long, env = "HALLWAY_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: DurationMs,
    /// Attempts a delivery may have beyond its automatic ones, each a manual retry.
    #[arg(long, env = "HALLWAY_MAX_MANUAL_RETRIES", default_value_t = hallway_domain::policy::DEFAULT_MAX_MANUAL_RETRIES)]
    pub max_manual_retries: u32,
    /// Manual retries and test sends one account may ask for per minute (0: unlimited).
    #[arg(long, env = "HALLWAY_MANUAL_ACTIONS_PER_MINUTE", default_value_t = 60)]
    pub manual_actions_per_minute: u32,
    /// The webhooks page's flags.
    #[command(flatten)]
    pub portal: Box<crate::portal::PortalArgs>,
    /// Most deliveries one recover may send again; a range holding more is refused.
    #[arg(long, env = "HALLWAY_MAX_RECOVER", default_value_t = hallway_runtime::DEFAULT_MAX_RECOVER)]
    pub max_recover: usize,
    /// The memory the engine plans for (at least 1MiB): an eighth holds each webhook's next
    /// waiting deliveries, and a backlog beyond that waits in the data directory.
    #[arg(long, env = "HALLWAY_MEMORY_BUDGET", default_value = "256MiB", value_parser = parse_size)]
    pub memory_budget: u64,
    /// Consecutive failures that raise a `webhook.failing` alert (0: never).
    #[arg(long, env = "HALLWAY_FAILING_ALERT_AFTER", default_value_t = hallway_domain::policy::DEFAULT_FAILING_ALERT_AFTER)]
    pub failing_alert_after: u32,
    /// Where to POST operational alerts (`webhook.disabled`, ...); none are sent without it.
    #[arg(long, env = "HALLWAY_ALERT_URL")]
    pub alert_url: Option<String>,
    /// The secret alerts are signed with (required with --alert-url).
    #[arg(long, env = "HALLWAY_ALERT_SECRET", hide_env_values = true)]
    pub alert_secret: Option<String>,
    /// A JSON file declaring the event types: `[{"name","description","example"}]`.
    /// Without it, the spec's `session.processing.completed` is the one type.
    #[arg(long, env = "HALLWAY_EVENT_CATALOG")]
    pub event_catalog: Option<PathBuf>,
    /// Hallway's plan rule: webhooks only for accounts on the Pro plan (`false` to let every
    /// account have them).
    #[arg(long, env = "HALLWAY_REQUIRE_PRO_PLAN", default_value_t = true, action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub require_pro_plan: bool,
    /// Hallway's project rule: every published event names its `project.id` (`false` to make
    /// it optional; an event without one reaches only webhooks without a project filter).
    #[arg(long, env = "HALLWAY_REQUIRE_PROJECT", default_value_t = true, action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub require_project: bool,
}

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The webhook's signing secret; prefer the environment variable, which `ps` does not show.
    #[arg(long, env = SECRET_ENV, hide_env_values = true)]
    pub secret: Option<String>,
    /// The `X-Hallway-Signature` header's value, or the whole pasted header line
    /// (`X-Hallway-Signature: t=...,v1=...`); for Standard Webhooks, three of these: the
    /// `webhook-id: ...`, `webhook-timestamp: ...` and `webhook-signature: ...` lines.
    #[arg(long, required = true)]
    pub header: Vec<String>,
    /// The raw body; standard input when not given.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Largest accepted distance between the header's time and now, in seconds.
    #[arg(long, default_value_t = 300)]
    pub tolerance_secs: u64,
    /// "Now" as Unix seconds (defaults to the system clock), for checking old captures.
    #[arg(long)]
    pub now: Option<u64>,
}

/// Flags of `listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    pub port: u16,
    /// The webhook's signing secret; prefer the environment variable, which `ps` does not show.
    #[arg(long, env = SECRET_ENV, hide_env_values = true)]
    pub secret: Option<String>,
    /// Largest accepted signature age, in seconds.
    #[arg(long, default_value_t = 300)]
    pub tolerance_secs: u64,
    /// Also print each request's headers and its body, pretty-printed when it is JSON.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Verify(args) => crate::verify::verify(args),
        Command::Serve(args) => with_runtime(cli.log_format, || serve(args)),
        Command::Listen(args) => with_runtime(cli.log_format, || crate::listen::listen(args)),
        Command::PortalLink(args) => {
            with_runtime(cli.log_format, || crate::portal::cli::portal_link(args))
        }
        Command::Openapi => {
            print!("{}", crate::api::openapi::document_json());
            ExitCode::SUCCESS
        }
    }
}

fn with_runtime<F, Fut>(format: LogFormat, f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    // Kept to the end: dropping it writes the log lines still gathered.
    let _logs = init_logging(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fatal(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(&e);
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) -> crate::log_writer::LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = crate::log_writer::start(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            // Fields at the top level, so collectors index `status` rather than
            // `fields.status`.
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .try_init()
        }
    };
    guard
}

/// Reads the admin token from the flag, or from the data dir, or makes and saves a new one
/// (mode 0600) and prints it once.
fn admin_token(args: &ServeArgs) -> Result<String, String> {
    if let Some(t) = &args.admin_token {
        if t.len() < 16 {
            return Err("--admin-token must be at least 16 characters".into());
        }
        return Ok(t.clone());
    }
    let path = args.data_dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            notice(&format!("admin token: read from {}", path.display()));
            return Ok(t);
        }
    }
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| format!("random source failed: {e}"))?;
    let token = format!("hwa_{}", hex::encode(raw));
    write_private(&path, token.as_bytes())?;
    println!(
        "Generated an admin token (saved in {}, shown only now):\n\n  {token}\n\nTry it:\n\n  curl -s -X POST http://{}/v1/accounts \\\n    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{{\"id\":\"acc_1\",\"name\":\"Acme Research\",\"plan\":\"pro\"}}'\n",
        path.display(),
        args.listen
    );
    Ok(token)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates the data dir, readable by its owner only.
pub fn create_private_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn load_roots(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    // Everything the engine writes (sled's files included) is its owner's alone, whatever
    // umask the process was started with.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    create_private_dir(&args.data_dir)?;
    let token = admin_token(&args)?;
    let policy = Policy {
        retry_delays: args.retry_delays.0.clone(),
        attempt_timeout: args.attempt_timeout,
        auto_disable_after: args.auto_disable_after,
        max_webhooks_per_account: args.max_webhooks_per_account,
        max_payload_bytes: args.max_payload_bytes,
        require_https: !args.allow_http,
        allow_private_targets: args.allow_private_targets,
        max_manual_retries: args.max_manual_retries,
        failing_alert_after: args.failing_alert_after,
        max_in_flight_per_webhook: args.max_in_flight_per_webhook,
        require_pro_plan: args.require_pro_plan,
        require_project: args.require_project,
        ..Policy::default()
    };
    let catalog = match &args.event_catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--event-catalog {}: {e}", path.display()))?;
            Catalog::from_json(&text, &policy)
                .map_err(|e| format!("--event-catalog {}: {e}", path.display()))?
        }
        None => Catalog::default(),
    };
    let policy = Policy {
        event_types: catalog.names(),
        ..policy
    };
    let extra_roots = match &args.ca_file {
        Some(p) => load_roots(p)?,
        None => Vec::new(),
    };
    let alert_transport = match &args.alert_url {
        Some(url) => {
            if args.alert_secret.as_deref().unwrap_or("").is_empty() {
                return Err("--alert-url needs --alert-secret to sign alerts".into());
            }
            let tc = TransportConfig {
                allow_private_targets: args.allow_private_targets,
                extra_roots: extra_roots.clone(),
                ..TransportConfig::default()
            };
            let t = hallway_runtime::HttpsTransport::new(tc).map_err(|e| e.to_string())?;
            Some((url.clone(), std::sync::Arc::new(t)))
        }
        None => None,
    };
    let key_path = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("master.key"));
    let master_key = MasterKey::load_or_create(&key_path).map_err(|e| e.to_string())?;
    let previous_master_keys = match &args.previous_master_key_file {
        Some(p) => vec![MasterKey::load(p).map_err(|e| e.to_string())?],
        None => Vec::new(),
    };
    let budget = crate::fds::split(args.max_connections as usize, args.max_in_flight.max(1));
    let config = Config {
        policy,
        master_key: Some(master_key),
        previous_master_keys,
        manual_actions_per_minute: args.manual_actions_per_minute,
        max_recover: args.max_recover,
        memory_budget_bytes: args.memory_budget,
        catalog: std::sync::Arc::new(catalog),
        max_in_flight: budget.max_in_flight,
        transport_config: TransportConfig {
            extra_roots,
            ..TransportConfig::default()
        },
        ..Config::default()
    };
    let engine = Engine::open(args.data_dir.join("store"), config)
        .await
        .map_err(|e| format!("cannot open {}: {e}", args.data_dir.display()))?;
    if let Some((url, transport)) = alert_transport {
        crate::alert_sink::AlertSink {
            url,
            secret: args.alert_secret.clone().unwrap_or_default(),
            cursor_file: args.data_dir.join("alerts.cursor"),
            transport,
            timeout: Duration::from_millis(args.attempt_timeout.0),
        }
        .start(engine.handle())?;
    }
    let state = AppState::new(engine.handle(), token);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let portal = crate::portal::PortalConfig::from_args(&args.portal, addr, args.allow_http)?;
    let app = router(state.clone()).merge(crate::portal::router(crate::portal::Portal::new(
        state, portal,
    )));
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "hallway-webhooks serving");
    notice(&format!("listening on http://{addr}"));
    let limits = crate::server::Limits {
        max_connections: budget.max_connections,
        header_read_timeout: Duration::from_millis(args.header_read_timeout.0),
        idle_timeout: Duration::from_millis(args.idle_timeout.0),
        request_timeout: Duration::from_millis(args.request_timeout.0),
        shutdown_grace: Duration::from_millis(args.shutdown_grace.0),
    };
    crate::server::serve(listener, app, limits, shutdown_signal()).await;
    tracing::info!("shutting down");
    tokio::time::timeout(Duration::from_secs(30), engine.shutdown())
        .await
        .map_err(|_| "shutdown timed out".to_owned())?
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(DurationMs(250)));
        assert_eq!(parse_duration("30s"), Ok(DurationMs(30_000)));
        assert_eq!(parse_duration("5m"), Ok(DurationMs(300_000)));
        assert_eq!(parse_duration("2h"), Ok(DurationMs(7_200_000)));
        assert_eq!(parse_duration("0s"), Ok(DurationMs(0)));
        assert_eq!(parse_duration("1h30m"), Ok(DurationMs(5_400_000)));
        assert_eq!(parse_duration("1d"), Ok(DurationMs(86_400_000)));
        assert_eq!(parse_duration(" 2m 30s "), Ok(DurationMs(150_000)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-5s").is_err());
        assert_eq!(parse_duration("1.5s"), Ok(DurationMs(1_500)));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size(" 64 KiB "), Ok(64 << 10));
        assert_eq!(parse_size("300MB"), Ok(300_000_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in [
            "512",
            "",
            "MiB",
            "1.5GiB",
            "-1MiB",
            "5XB",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_retry_delays_are_the_spec() {
        let d = parse_delays("0s,1m,5m,30m,2h").unwrap();
        assert_eq!(d.0, Policy::default().retry_delays);
        assert!(parse_delays("").is_err());
        assert!(parse_delays("1s,,2s").is_err());
    }
}
