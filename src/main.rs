//! The `vote-api` command: `serve` (default), `migrate`, `seed`.
//! Reads the configuration, sets up logging and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use vote_api::config::{Config, LogFormat};
use vote_api::db;
use vote_api::logsink::{self, Flusher};

/// jemalloc with background purging: memory freed when thousands of screens
/// leave goes back to the system within seconds (glibc's malloc kept it;
/// docs/benchmarks.md, "Screens, churn and memory"). Its view is exported as `allocator_*_bytes`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "Live conference poll (see README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Insert referral partners (idempotent), including conf-partner-2026.
    Seed {
        /// How many generated partners to insert.
        #[arg(long, default_value_t = db::partners::DEFAULT_SEED_PARTNERS)]
        partners: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vote-api: {e}");
            return ExitCode::from(2);
        }
    };
    // Dropped last, after the runtime: its last lines are written too.
    let _flusher = match init_tracing(config.log_format) {
        Ok(flusher) => flusher,
        Err(e) => {
            eprintln!("vote-api: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(overflow) = config.db_max_overflow {
        // Once per process: accepted for compatibility, it changes nothing.
        warn!(
            db_max_overflow = overflow,
            "DB_MAX_OVERFLOW has no effect: the PostgreSQL pool has a fixed size (DB_POOL_SIZE)"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vote-api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(&config).await,
            Command::Seed { partners } => seed(&config, partners).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // Listening for SIGTERM before the port opens: a stop that comes as soon
    // as the port accepts is a graceful one, not the default kill.
    let signal = wait_for_signal();
    let running = vote_api::start(config, shutdown.clone()).await?;
    signal.await;
    info!("shutting down");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = db::pool(&config.database_url, 1)?;
    let applied = db::migrate::run(&pool).await?;
    info!(applied, "migrations up to date");
    Ok(())
}

async fn seed(config: &Config, partners: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    let pool = vote_api::prepare_db(config).await?;
    let inserted = db::partners::seed(&pool, partners).await?;
    info!(
        inserted,
        partners,
        seconds = started.elapsed().as_secs_f64(),
        "referral partners seeded"
    );
    Ok(())
}

/// SIGTERM's handler is installed when this is called, not when awaited.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs go through `LogSink` (one write per gathered batch, never a blocked
/// request); the returned flusher writes the rest when dropped. Colours only
/// on a terminal, and not with `NO_COLOR`: a log file or collector gets plain text.
fn init_tracing(format: LogFormat) -> std::io::Result<Flusher> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let ansi = colour && std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let (sink, flusher) = logsink::spawn(std::io::stdout())?;
    let builder = builder.with_writer(sink);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(flusher)
}
