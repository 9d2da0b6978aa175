//! `ldp serve`: run the aggregator until SIGINT or SIGTERM, then shut down
//! gracefully (stop accepting, finish in-flight batches, close the database).
//!
//! The bearer token for Analytics and Admin comes from `--token-file`, else the
//! `LDP_TOKEN` environment variable, else the file `<db>.token` next to the
//! database; when none exists a random token is generated and written there
//! (mode 0600), and its path is printed. Only its SHA-256 stays in memory.
//!
//! Once listening, the command prints `listening on ADDR` on standard output
//! (useful with `--listen 127.0.0.1:0`).
//!
//! One server per database: the command holds an exclusive lock on `<db>.lock`
//! while it runs, and a second `ldp serve` on the same database refuses to start.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::ingest::IngestConfig;
use crate::server::{Config, DEFAULT_MAX_MESSAGE_BYTES, Server, TlsFiles};
use crate::service::auth::Token;

/// Options of `ldp serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// SQLite database file, created on first start.
    #[arg(long, default_value = "ldp.db")]
    pub db: PathBuf,
    /// File holding the bearer token (default: `LDP_TOKEN`, else `<db>.token`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Most reports accepted in one Submit batch (at least 1).
    #[arg(long, default_value_t = IngestConfig::default().max_batch_reports, value_parser = at_least::<1>)]
    pub max_batch_reports: usize,
    /// Largest accepted gRPC message in bytes (at least 1024).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_parser = at_least::<1024>)]
    pub max_message_bytes: usize,
    /// Most batches committed in one transaction (group commit; at least 1).
    #[arg(long, default_value_t = IngestConfig::default().max_group_batches, value_parser = at_least::<1>)]
    pub max_group_batches: usize,
    /// Keep raw reports for this many seconds (default: keep none).
    #[arg(long)]
    pub retain_raw_seconds: Option<u64>,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Runs the server until a signal.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _lock = lock_database(&args.db)?;
    let token = resolve_token(args.token_file.as_deref(), &args.db)?;
    let mut config = Config::new(args.listen, args.db.clone(), &token);
    drop(token);
    config.ingest.max_batch_reports = args.max_batch_reports;
    config.ingest.max_group_batches = args.max_group_batches;
    config.max_message_bytes = args.max_message_bytes;
    config.raw_retention = args.retain_raw_seconds.map(Duration::from_secs);
    config.tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => {
            // Name the file that is missing; the server's own error would not.
            for (flag, path) in [("--tls-cert", &cert), ("--tls-key", &key)] {
                std::fs::File::open(path)
                    .with_context(|| format!("reading {flag} {}", path.display()))?;
            }
            Some(TlsFiles { cert, key })
        }
        _ => None,
    };
    let running = Server::start(config).await.with_context(|| {
        format!(
            "starting the server on {} with database {}",
            args.listen,
            args.db.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", running.local_addr())?;
    out.flush()?;
    drop(out);
    shutdown_signal().await?;
    tracing::info!("signal received, shutting down");
    running.shutdown().await?;
    Ok(())
}

/// Parses an integer option that must be at least `MIN` (0 would refuse every
/// request while the server looks healthy).
fn at_least<const MIN: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if n >= MIN {
        Ok(n)
    } else {
        Err(format!("must be at least {MIN}"))
    }
}

/// Takes the exclusive lock `<db>.lock`, held until the process ends: two
/// servers on one SQLite file would each keep their own metrics and closed
/// epochs in memory, so one would accept reports for an epoch the other closed
/// and miss metrics the other created. (Reading the file, as `ldp
/// privacy-report` does, needs no lock.)
fn lock_database(db: &Path) -> anyhow::Result<std::fs::File> {
    let path = sibling(db, ".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "database {} is already served by another ldp process (it holds {})",
            db.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// `<db><suffix>`, next to the database.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn resolve_token(file: Option<&Path>, db: &Path) -> anyhow::Result<Token> {
    if let Some(path) = file {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        return Token::new(&raw).map_err(anyhow::Error::msg);
    }
    if let Ok(raw) = std::env::var("LDP_TOKEN") {
        return Token::new(&raw).map_err(anyhow::Error::msg);
    }
    let path = sibling(db, ".token");
    if path.exists() {
        let raw = std::fs::read_to_string(&path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        return Token::new(&raw).map_err(anyhow::Error::msg);
    }
    let token = Token::generate();
    write_private(&path, token.expose())?;
    eprintln!(
        "generated a bearer token for Analytics and Admin: {}",
        path.display()
    );
    Ok(token)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{contents}")?;
    file.sync_all()?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
