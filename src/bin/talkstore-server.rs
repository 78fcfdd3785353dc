//! `talkstore-server`: the talkstore engine behind a websocket, with SQLite storage.
//!
//! Run `cargo run --features server --bin talkstore-server -- --help` for every option.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, ValueEnum};
use talkstore::{
    Durability, Policy,
    server::{AppCredentials, Limits, Server, ServerConfig},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Safe against process crashes (SQLite synchronous=NORMAL in WAL mode).
    Normal,
    /// Also safe against power loss (synchronous=FULL); slower commits.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// Users never join uninvited, never raise their own access, edit only their own user.
    Restricted,
    /// As TalkJS with client-side syncing: any user may join any conversation.
    Permissive,
}

impl From<PolicyArg> for Policy {
    fn from(arg: PolicyArg) -> Self {
        match arg {
            PolicyArg::Restricted => Policy::Restricted,
            PolicyArg::Permissive => Policy::Permissive,
        }
    }
}

/// Serves the talkstore Data API over websocket, with data in SQLite.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TALKSTORE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the databases, one `{app_id}.sqlite` per app.
    #[arg(long, env = "TALKSTORE_DATA_DIR", default_value = "talkstore-data")]
    data_dir: PathBuf,
    /// An app as `ID:SECRET` (secret at least 16 bytes). Repeat for several apps; in the
    /// environment, separate them with commas.
    #[arg(
        long = "app",
        env = "TALKSTORE_APPS",
        value_delimiter = ',',
        required = true
    )]
    apps: Vec<String>,
    /// Apps whose tokens need no `exp` claim (comma-separated ids). By default `exp` is required.
    #[arg(long, env = "TALKSTORE_APPS_WITHOUT_EXP", value_delimiter = ',')]
    apps_without_exp: Vec<String>,
    /// What users may change through their own sessions, for every app not named in
    /// `--app-policy`. `restricted`: users create conversations and invite others, but never
    /// join uninvited, never raise their own access and edit only their own user (PROTOCOL.md
    /// §3 has the full table). `permissive`: as TalkJS with client-side syncing.
    #[arg(
        long,
        env = "TALKSTORE_POLICY",
        value_enum,
        default_value = "restricted"
    )]
    policy: PolicyArg,
    /// The policy of one app, as `ID=POLICY` (for example `demo=permissive`). Repeat for
    /// several apps; in the environment, separate them with commas.
    #[arg(
        long = "app-policy",
        env = "TALKSTORE_APP_POLICIES",
        value_delimiter = ','
    )]
    app_policies: Vec<String>,
    /// Development only: let users connect without a token. Never use in production.
    #[arg(long, env = "TALKSTORE_DEV_UNAUTHENTICATED")]
    dev_allow_unauthenticated: bool,
    /// SQLite durability.
    #[arg(
        long,
        env = "TALKSTORE_DURABILITY",
        value_enum,
        default_value = "normal"
    )]
    durability: DurabilityArg,
    /// Largest websocket message, in bytes (larger ones close the connection with 1009).
    #[arg(long, env = "TALKSTORE_MAX_MESSAGE_BYTES", default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Frames queued per connection before a slow reader is disconnected (close 1008).
    #[arg(long, env = "TALKSTORE_OUTBOUND_QUEUE", default_value_t = Limits::default().outbound_queue)]
    outbound_queue: usize,
    /// Requests per second per connection.
    #[arg(long, env = "TALKSTORE_REQUESTS_PER_SECOND", default_value_t = Limits::default().requests_per_second)]
    requests_per_second: u32,
    /// Open connections per user and app.
    #[arg(long, env = "TALKSTORE_CONNECTIONS_PER_USER", default_value_t = Limits::default().connections_per_user)]
    connections_per_user: usize,
    /// Frames waiting for an app's engine past which writes are answered RATE_LIMITED.
    #[arg(long, env = "TALKSTORE_ENGINE_BACKLOG", default_value_t = Limits::default().engine_backlog)]
    engine_backlog: usize,
    /// Log filter (tracing `EnvFilter` syntax), for example `info` or `talkstore=debug`.
    #[arg(long, env = "TALKSTORE_LOG", default_value = "info")]
    log: String,
}

fn config(args: Args) -> Result<ServerConfig, String> {
    let mut policies = HashMap::new();
    for spec in &args.app_policies {
        let parsed = spec.split_once('=').and_then(|(id, policy)| {
            let policy = PolicyArg::from_str(policy, true).ok()?;
            Some((id.to_owned(), Policy::from(policy)))
        });
        let Some((id, policy)) = parsed else {
            return Err(format!(
                "--app-policy {spec:?}: expected ID=restricted or ID=permissive"
            ));
        };
        if policies.insert(id.clone(), policy).is_some() {
            return Err(format!("--app-policy names app {id} twice"));
        }
    }
    let mut apps = Vec::new();
    for spec in &args.apps {
        let mut app = AppCredentials::parse(spec).map_err(|e| e.to_string())?;
        app.require_exp = !args.apps_without_exp.contains(&app.id);
        app.policy = policies.remove(&app.id).unwrap_or(args.policy.into());
        apps.push(app);
    }
    if let Some(id) = policies.keys().next() {
        return Err(format!(
            "--app-policy names app {id}, which no --app configures"
        ));
    }
    let mut config = ServerConfig::new(args.listen, args.data_dir, apps);
    config.allow_unauthenticated = args.dev_allow_unauthenticated;
    config.durability = match args.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Full => Durability::Full,
    };
    let mut limits = Limits::default();
    limits.max_message_bytes = args.max_message_bytes;
    limits.outbound_queue = args.outbound_queue;
    limits.requests_per_second = args.requests_per_second;
    limits.engine_backlog = args.engine_backlog;
    limits.connections_per_user = args.connections_per_user;
    config.limits = limits;
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = match config(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("talkstore-server: {error}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("talkstore-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    match server.serve(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("talkstore-server: {error}");
            ExitCode::FAILURE
        }
    }
}
