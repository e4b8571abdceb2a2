//! The `llm-gateway` command: `serve`, `migrate`, the operator commands
//! (`users`, `keys`, `pricing`, `audit`) and the mock provider.

use clap::{Args, Parser, Subcommand};
use llm_gateway::cli;
use llm_gateway::clock::Clock;
use llm_gateway::config::{config_path, Config, Overrides};
use llm_gateway::db::Db;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "llm-gateway",
    version,
    about = "OpenAI-compatible LLM gateway with prepaid billing"
)]
struct Cli {
    /// Defaults to `serve`, which is how cargo-leptos starts the binary.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard and every API on one port.
    Serve(ConfigArgs),
    /// Apply database migrations and exit.
    Migrate(ConfigArgs),
    /// Run the mock upstream provider (OpenAI, Anthropic and Gemini formats).
    MockProvider(MockArgs),
    /// Manage users: create, list, credit, set-role.
    Users {
        #[command(subcommand)]
        command: cli::UsersCommand,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        output: cli::Output,
    },
    /// Manage API keys: create, list, revoke.
    Keys {
        #[command(subcommand)]
        command: cli::KeysCommand,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        output: cli::Output,
    },
    /// Manage prices: set, delete, list.
    Pricing {
        #[command(subcommand)]
        command: cli::PricingCommand,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        output: cli::Output,
    },
    /// Check the books (ledger = balance, each usage record's cost = its
    /// debit, no stale hold, every debt recorded) and reconcile usage by
    /// provider and day. Exits 1 on any mismatch.
    Audit {
        #[command(flatten)]
        options: cli::AuditOptions,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Options of the mock provider; see `llm_gateway::mock` for per-request faults.
#[derive(Args)]
struct MockArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 4010)]
    port: u16,
    /// Delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks per reply.
    #[arg(long, default_value_t = 6)]
    chunks: usize,
    /// Delay between stream chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Also run a mail sink (SMTP) on this port; the caught mail is at
    /// `GET /mock/mail` on the HTTP port.
    #[arg(long)]
    smtp_port: Option<u16>,
    /// Where the mock Stripe sends its signed webhook events (the
    /// gateway's `/webhooks/stripe`); also settable with
    /// `POST /mock/stripe/endpoint`.
    #[arg(long, requires = "stripe_webhook_secret")]
    stripe_webhook_url: Option<String>,
    /// The secret the mock Stripe signs events with (the gateway's
    /// `payments.webhook_secret`).
    #[arg(long)]
    stripe_webhook_secret: Option<String>,
}

/// Where the configuration comes from; flags win over `GATEWAY_*` and the file.
#[derive(Args, Default)]
struct ConfigArgs {
    /// Path to config.yml (default: $GATEWAY_CONFIG, then ./config.yml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to listen on (0 picks a free one).
    #[arg(long, global = true)]
    port: Option<u16>,
    /// sqlite://path/to/file.db or postgres://…
    #[arg(long, global = true)]
    database_url: Option<String>,
}

impl ConfigArgs {
    fn load(self) -> Result<Config, String> {
        let env = |name: &str| std::env::var(name).ok();
        let path = config_path(self.config, &env);
        let overrides = Overrides {
            host: self.host,
            port: self.port,
            database_url: self.database_url,
        };
        Config::load(path.as_deref(), &env, &overrides).map_err(|e| e.to_string())
    }
}

/// mimalloc rather than the system's: with glibc's, `malloc` and `free` were
/// about a fifth of the instructions a proxied request costs (callgrind, as
/// `bench/instructions.sh` runs it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ConfigArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::MockProvider(args) => mock_provider(args).await,
        Command::Users {
            command: cmd,
            config,
            output,
        } => operate(config, output, |db, c| Box::pin(cli::users(db, c, cmd))).await,
        Command::Keys {
            command: cmd,
            config,
            output,
        } => operate(config, output, |db, c| Box::pin(cli::keys(db, c, cmd))).await,
        Command::Pricing {
            command: cmd,
            config,
            output,
        } => operate(config, output, |db, c| Box::pin(cli::pricing(db, c, cmd))).await,
        Command::Audit { options, config } => audit(config, options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_sessions=warn"));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(args: ConfigArgs) -> Result<(), String> {
    let config = args.load()?;
    let site = llm_gateway::server::Site::resolve(&config)?;
    tracing::info!(?config, site_root = %site.options.site_root, "starting");
    let server = llm_gateway::server::spawn(config, site)
        .await
        .map_err(|e| e.to_string())?;
    println!("llm-gateway listening on http://{}", server.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

async fn migrate(args: ConfigArgs) -> Result<(), String> {
    let config = args.load()?;
    let db = Db::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    db.close().await;
    println!("migrations applied to {}", db.backend());
    Ok(())
}

/// Runs an operator command against the configured (migrated) database.
async fn operate<F>(args: ConfigArgs, output: cli::Output, command: F) -> Result<(), String>
where
    F: for<'a> FnOnce(
        &'a Db,
        Clock,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<cli::Printed, String>> + 'a>,
    >,
{
    let config = args.load()?;
    let db = Db::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let result = command(&db, Clock::default()).await;
    db.close().await;
    println!("{}", result?.render(output));
    Ok(())
}

/// Runs the audit on the configured database: the report on standard
/// output, and a failure (exit 1) when a check did not hold.
async fn audit(args: ConfigArgs, options: cli::AuditOptions) -> Result<(), String> {
    let config = args.load()?;
    let db = Db::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let result = cli::audit(&db, &Clock::default(), options).await;
    db.close().await;
    let (report, passed) = result?;
    print!("{report}");
    if passed {
        Ok(())
    } else {
        Err("the audit found mismatches (listed above)".into())
    }
}

async fn mock_provider(args: MockArgs) -> Result<(), String> {
    let options = llm_gateway::mock::MockOptions {
        latency_ms: args.latency_ms,
        chunks: args.chunks,
        chunk_delay_ms: args.chunk_delay_ms,
    };
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("mock provider listening on http://{addr}");
    let endpoint = args
        .stripe_webhook_url
        .zip(args.stripe_webhook_secret)
        .map(|(url, secret)| llm_gateway::mock::stripe::Endpoint { url, secret });
    let mut router = llm_gateway::mock::router(options)
        .merge(llm_gateway::mock::stripe::StripeMock::new(endpoint).routes());
    if let Some(port) = args.smtp_port {
        let sink = llm_gateway::mock::smtp::start(&format!("{}:{port}", args.host))
            .await
            .map_err(|e| format!("cannot listen on {}:{port}: {e}", args.host))?;
        println!("mock SMTP sink listening on {}", sink.url());
        router = router.merge(sink.routes());
    }
    axum::serve(llm_gateway::server::without_nagle(listener), router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
