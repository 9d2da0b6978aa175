//! `ldp serve`: run the aggregator until SIGINT or SIGTERM, then shut down
//! gracefully (stop accepting, finish in-flight batches, close the database).
//!
//! `--db` names the database: a `postgres://` or `postgresql://` URL selects
//! PostgreSQL (the database must exist; the tables are created in the first
//! existing schema of its `search_path`, resolved once at start and pinned for
//! the life of the process), anything else is a SQLite file (default `ldp.db`,
//! created on first start).
//!
//! The bearer token for Analytics and Admin comes from `--token-file`, else the
//! `LDP_TOKEN` environment variable, else (SQLite only) the file `<db>.token`
//! next to the database. A PostgreSQL URL has no "next to", so with PostgreSQL
//! `--token-file` or `LDP_TOKEN` is required. A missing `--token-file` is an
//! error (a secret that failed to be provisioned must not be replaced by a
//! token nobody has), unless `--create-token-file` asks for it to be created;
//! a missing `<db>.token` is always created. A created file holds a random
//! token, is readable by its owner only (mode 0600), and its path is printed;
//! it appears whole or not at all, and never replaces a file another process
//! created at the same moment ([`create_token_file`]). On Unix a token file
//! that its group or others may read or write is refused, as ssh refuses such
//! a key. The token is resolved before the database is locked or opened. Only
//! the token's SHA-256 stays in memory.
//!
//! Once listening, the command prints `listening on ADDR` on standard output
//! (useful with `--listen 127.0.0.1:0`).
//!
//! One server per database: the server keeps metrics, device budgets and
//! closed epochs in memory, so two servers on one database would each miss what
//! the other changed (one would accept reports for an epoch the other closed).
//! On SQLite the command holds an exclusive lock on `<db>.lock`; on PostgreSQL
//! it holds a session-level advisory lock (`pg_try_advisory_lock`, keyed by the
//! schema) on a connection of its own, and serves exactly the schema that lock
//! names (the store connects with `search_path` set to it). Either is held until the process ends,
//! and a second `ldp serve` on the same database refuses to start. Readers
//! such as `ldp privacy-report` take no lock.
//!
//! A PostgreSQL lock lives as long as its connection, which could drop while
//! the server runs (a database restart, `idle_session_timeout`, a NAT timeout).
//! The server asks `pg_locks` on that connection every `--lock-check-seconds`
//! (30 by default) whether its session still holds the lock; when the query
//! fails or the lock is gone it logs an error, shuts down gracefully (no
//! new requests; batches already committed are acknowledged) and exits with
//! an error, so a supervisor restarts it and it takes the lock anew.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::ingest::IngestConfig;
use crate::server::{Config, DEFAULT_MAX_MESSAGE_BYTES, Server, TlsFiles};
use crate::service::auth::Token;
use crate::store::Database;
use crate::store::postgres::ServerLock;

/// Options of `ldp serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// SQLite database file (created on first start), or a `postgres://` URL.
    #[arg(long, default_value = "ldp.db", value_parser = super::DbValueParser)]
    pub db: Database,
    /// File holding the bearer token, mode 0600 (default: `LDP_TOKEN`, else
    /// `<db>.token` for SQLite, created when missing; PostgreSQL needs this or
    /// `LDP_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Create --token-file with a random token when it does not exist.
    #[arg(long, requires = "token_file")]
    pub create_token_file: bool,
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
    /// PostgreSQL: seconds between checks that the server lock's session still
    /// holds the lock; the server stops when one fails (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lock_check_seconds: u64,
}

/// Runs the server until a signal.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let env_token = std::env::var("LDP_TOKEN").ok();
    let file = args.token_file.as_deref().map(|path| TokenFile {
        path,
        create: args.create_token_file,
    });
    let token = resolve_token(file, env_token, &args.db)?;
    let mut lock = lock_database(&args.db).await?;
    let mut config = Config::new(args.listen, lock.served(&args.db)?, &token);
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
            args.listen, args.db
        )
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", running.local_addr())?;
    out.flush()?;
    drop(out);
    let lost = tokio::select! {
        signal = shutdown_signal() => {
            signal?;
            tracing::info!("signal received, shutting down");
            None
        }
        e = lock.lost(Duration::from_secs(args.lock_check_seconds)) => {
            tracing::error!(
                "lost the server lock of {}: {e:#}; shutting down",
                args.db
            );
            Some(e)
        }
    };
    running.shutdown().await?;
    match lost {
        None => lock.release().await,
        Some(e) => Err(e.context(format!(
            "stopped: lost the server lock of {} (another server may now take it)",
            args.db
        ))),
    }
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

/// The one-server-per-database lock, held until released or the process ends.
#[derive(Debug)]
enum DatabaseLock {
    /// An exclusive lock on `<db>.lock`.
    File(std::fs::File),
    /// A PostgreSQL advisory lock on its own connection.
    Postgres(ServerLock),
}

impl DatabaseLock {
    /// Resolves when the lock is found lost, checking every `period`; a check
    /// that takes longer than `period` (and at least 10 s, so a busy database
    /// does not stop the server) counts as a loss: a connection dropped
    /// silently by a NAT would otherwise hang until TCP gives up. A file lock
    /// cannot be lost, so it never resolves for one.
    async fn lost(&mut self, period: Duration) -> anyhow::Error {
        let Self::Postgres(lock) = self else {
            return std::future::pending().await;
        };
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            let patience = period.max(Duration::from_secs(10));
            match tokio::time::timeout(patience, lock.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return e.into(),
                Err(_) => {
                    return anyhow::anyhow!(
                        "the lock connection did not answer within {patience:?}"
                    );
                }
            }
        }
    }

    /// The database to serve: `db`, on PostgreSQL pinned to the schema this
    /// lock guards, so the store cannot resolve its `search_path` to another
    /// schema than the lock did (one created in front of it meanwhile).
    fn served(&self, db: &Database) -> anyhow::Result<Database> {
        match (self, db) {
            (Self::Postgres(lock), Database::Postgres(options)) => Ok(Database::Postgres(
                Box::new(lock.pinned((**options).clone())?),
            )),
            _ => Ok(db.clone()),
        }
    }

    async fn release(self) -> anyhow::Result<()> {
        match self {
            Self::File(file) => drop(file),
            Self::Postgres(lock) => lock.release().await?,
        }
        Ok(())
    }
}

/// Takes the database's lock (see the module docs), or explains who holds it.
async fn lock_database(db: &Database) -> anyhow::Result<DatabaseLock> {
    match db {
        Database::Sqlite(path) => lock_file(path).map(DatabaseLock::File),
        Database::Postgres(options) => match ServerLock::try_acquire(options)
            .await
            .with_context(|| format!("connecting to {db} to take its server lock"))?
        {
            Some(lock) => Ok(DatabaseLock::Postgres(lock)),
            None => anyhow::bail!(
                "database {db} is already served by another ldp process (it holds the \
                 PostgreSQL advisory lock of this schema)"
            ),
        },
    }
}

/// Takes the exclusive lock `<db>.lock`, held until the process ends. (Reading
/// the file, as `ldp privacy-report` does, needs no lock.)
fn lock_file(db: &Path) -> anyhow::Result<std::fs::File> {
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

/// `--token-file` and whether `--create-token-file` was given.
#[derive(Debug, Clone, Copy)]
struct TokenFile<'a> {
    path: &'a Path,
    create: bool,
}

/// The token from `file`, else `env` (the value of `LDP_TOKEN`), else the
/// SQLite database's `<db>.token`, created when missing.
fn resolve_token(
    file: Option<TokenFile<'_>>,
    env: Option<String>,
    db: &Database,
) -> anyhow::Result<Token> {
    if let Some(TokenFile { path, create }) = file {
        return if create {
            token_file_or_create(path)
        } else {
            read_token_file(path)
        };
    }
    if let Some(raw) = env {
        return Token::new(&raw).map_err(anyhow::Error::msg);
    }
    let Database::Sqlite(db) = db else {
        anyhow::bail!(
            "a PostgreSQL database needs --token-file or LDP_TOKEN for the Analytics and \
             Admin bearer token (there is no folder to keep <db>.token in)"
        );
    };
    token_file_or_create(&sibling(db, ".token"))
}

/// The token in the file at `path`, or a random one in a file created there
/// ([`create_token_file`]) when none exists. A file another process creates
/// at the same moment wins, and its token is read.
fn token_file_or_create(path: &Path) -> anyhow::Result<Token> {
    match create_token_file(path) {
        Ok(Some(token)) => {
            eprintln!(
                "generated a bearer token for Analytics and Admin: {}",
                path.display()
            );
            return Ok(token);
        }
        Ok(None) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating token file {}", path.display()));
        }
    }
    // A file is linked in whole, so it is never empty while ldp creates it;
    // one being written otherwise (by hand, by an older ldp) gets a moment.
    let mut raw = read_private(path)?;
    for _ in 0..10 {
        if !raw.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        raw = read_private(path)?;
    }
    parse_token(path, &raw)
}

/// The token in the existing file at `path` ([`read_private`]).
fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    parse_token(path, &read_private(path)?)
}

fn parse_token(path: &Path, raw: &str) -> anyhow::Result<Token> {
    Token::new(raw).map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))
}

/// The contents of the existing token file at `path`: a missing file names
/// `--create-token-file`, and on Unix a file its group or others may read or
/// write is refused.
fn read_private(path: &Path) -> anyhow::Result<String> {
    let mut file = match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "token file {} does not exist: provision it (mode 0600), or pass \
             --create-token-file to have a random token written there",
            path.display()
        ),
        opened => opened.with_context(|| format!("opening token file {}", path.display()))?,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .with_context(|| format!("reading token file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "token file {} may be read or written by its group or others (mode {:o}); \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut file, &mut raw)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(raw)
}

/// Creates the file `path` holding a random token, readable by its owner
/// only, or returns `None` when a file is there already. The token is
/// written to a temporary file in the same folder (mode 0600, synced), which
/// is then hard-linked to `path`: the link fails when `path` exists and never
/// replaces it, and `path` never exists without its whole token. The folder is
/// synced too, so that after a power loss the file is still there for the
/// clients that were given its token.
fn create_token_file(path: &Path) -> std::io::Result<Option<Token>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let token = Token::generate();
    // `tempfile` creates the file with O_EXCL and, on Unix, mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".ldp-token-")
        .tempfile_in(dir)?;
    writeln!(tmp, "{}", token.expose())?;
    tmp.as_file().sync_all()?;
    let linked = std::fs::hard_link(tmp.path(), path);
    tmp.close()?;
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Some(token))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `contents` to a new file at `path` with permission bits `mode`
    /// (on Unix).
    fn write_token(path: &Path, contents: &str, mode: u32) {
        std::fs::write(path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
    }

    fn given(path: &Path) -> Option<TokenFile<'_>> {
        Some(TokenFile {
            path,
            create: false,
        })
    }

    fn created(path: &Path) -> Option<TokenFile<'_>> {
        Some(TokenFile { path, create: true })
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The names in `dir`, sorted (no temporary file may be left behind).
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn postgres_needs_an_explicit_token() {
        let db: Database = "postgres://ldp@localhost/ldp".parse().unwrap();
        let err = resolve_token(None, None, &db).unwrap_err().to_string();
        assert!(err.contains("--token-file or LDP_TOKEN"), "{err}");
        assert!(resolve_token(None, Some("from-env".into()), &db).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        write_token(&file, "from-file\n", 0o600);
        let token = resolve_token(given(&file), None, &db).unwrap();
        assert_eq!(token.expose(), "from-file");
    }

    /// Regression: a missing `--token-file` (a secret that was not mounted)
    /// was silently created with a random token nobody had, so every
    /// Analytics and Admin call failed while the server looked healthy.
    #[test]
    fn a_missing_token_file_is_an_error_naming_the_flag() {
        let db: Database = "postgres://ldp@localhost/ldp".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ldp.token");
        let err = format!("{:#}", resolve_token(given(&file), None, &db).unwrap_err());
        assert!(
            err.contains("does not exist") && err.contains("--create-token-file"),
            "{err}"
        );
        assert!(!file.exists(), "the refused file was created");
    }

    /// `--create-token-file` creates a missing file (mode 0600, nothing else
    /// left in its folder) and later starts, with or without the flag, reuse it.
    #[test]
    fn create_token_file_creates_a_private_file_and_reuses_it() {
        let db: Database = "postgres://ldp@localhost/ldp".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ldp.token");
        let generated = resolve_token(created(&file), None, &db).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600);
        assert_eq!(names(dir.path()), ["ldp.token"]);
        for again in [created(&file), given(&file)] {
            let again = resolve_token(again, None, &db).unwrap();
            assert_eq!(again.expose(), generated.expose());
        }
        let missing_dir = dir.path().join("nowhere").join("ldp.token");
        let err = format!(
            "{:#}",
            resolve_token(created(&missing_dir), None, &db).unwrap_err()
        );
        assert!(err.contains("creating token file"), "{err}");
    }

    /// Regression: a second server creating the same token file at the same
    /// moment read it empty (it existed before its token was written) and
    /// failed with "the token is empty". Every racer gets the one token.
    #[test]
    fn racing_creators_all_get_the_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ldp.token");
        let barrier = std::sync::Barrier::new(8);
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        token_file_or_create(&file).unwrap().expose().to_owned()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
        assert_eq!(names(dir.path()), ["ldp.token"]);
        let stored = std::fs::read_to_string(&file).unwrap();
        assert_eq!(stored.trim(), tokens[0]);
    }

    /// A token file that exists but is still empty (being written by other
    /// means) is read again for a moment before it counts as empty.
    #[test]
    fn an_empty_token_file_is_read_again_for_a_moment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ldp.token");
        write_token(&file, "", 0o600);
        let writer = std::thread::spawn({
            let file = file.clone();
            move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::write(&file, "written-late\n").unwrap();
            }
        });
        let token = token_file_or_create(&file).unwrap();
        writer.join().unwrap();
        assert_eq!(token.expose(), "written-late");
        std::fs::write(&file, "").unwrap();
        let err = format!("{:#}", token_file_or_create(&file).unwrap_err());
        assert!(err.contains("the token is empty"), "{err}");
    }

    /// Regression: a token file anyone could read (or write, choosing the
    /// token) was accepted.
    #[cfg(unix)]
    #[test]
    fn a_token_file_others_may_read_is_refused() {
        let db: Database = "postgres://ldp@localhost/ldp".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ldp.token");
        for bad in [0o644, 0o640, 0o604, 0o620, 0o602] {
            write_token(&file, "shared\n", bad);
            for flags in [given(&file), created(&file)] {
                let err = format!("{:#}", resolve_token(flags, None, &db).unwrap_err());
                assert!(
                    err.contains(&format!("chmod 600 {}", file.display())),
                    "{bad:o}: {err}"
                );
            }
            std::fs::remove_file(&file).unwrap();
        }
        write_token(&file, "private\n", 0o400);
        assert!(resolve_token(given(&file), None, &db).is_ok());
    }

    #[test]
    fn sqlite_generates_its_token_next_to_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::Sqlite(dir.path().join("x.db"));
        let generated = resolve_token(None, None, &db).unwrap();
        assert!(dir.path().join("x.db.token").is_file());
        #[cfg(unix)]
        assert_eq!(mode(&dir.path().join("x.db.token")), 0o600);
        assert_eq!(names(dir.path()), ["x.db.token"]);
        let again = resolve_token(None, None, &db).unwrap();
        assert_eq!(again.expose(), generated.expose());
    }

    #[test]
    fn the_database_scheme_selects_the_backend() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h:5433/db",
            "POSTGRES://u@h/db",
        ] {
            assert!(matches!(url.parse(), Ok(Database::Postgres(_))), "{url}");
        }
        for path in [
            "ldp.db",
            "/var/lib/ldp/postgres.db",
            "postgres.db",
            "./postgres://x",
        ] {
            assert!(matches!(path.parse(), Ok(Database::Sqlite(_))), "{path}");
        }
        assert!("postgres://u@h:notaport/db".parse::<Database>().is_err());
        // The password never shows.
        let db: Database = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!format!("{db} {db:?}").contains("hunter2"), "{db:?}");
    }

    /// `--db` parses URLs (clap would otherwise pick any `From<&str>` over
    /// `FromStr` and make `--db postgres://...` a file name).
    #[test]
    fn db_flags_accept_postgres_urls() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: Args,
        }
        #[derive(clap::Parser)]
        struct Report {
            #[command(flatten)]
            args: crate::cli::privacy_report::Args,
        }
        let url = "postgres://u@h/db";
        let serve = <Serve as clap::Parser>::try_parse_from(["ldp", "--db", url]).unwrap();
        assert!(matches!(serve.args.db, Database::Postgres(_)));
        assert_eq!(serve.args.lock_check_seconds, 30);
        let report =
            <Report as clap::Parser>::try_parse_from(["ldp", "--db", url, "--out", "x"]).unwrap();
        assert!(matches!(report.args.db, Database::Postgres(_)));
        let file = <Serve as clap::Parser>::try_parse_from(["ldp"]).unwrap();
        assert!(matches!(file.args.db, Database::Sqlite(p) if p == Path::new("ldp.db")));
        assert!(!file.args.create_token_file);
        let created = <Serve as clap::Parser>::try_parse_from([
            "ldp",
            "--token-file",
            "t",
            "--create-token-file",
        ])
        .unwrap();
        assert!(created.args.create_token_file);
        assert!(<Serve as clap::Parser>::try_parse_from(["ldp", "--create-token-file"]).is_err());
    }

    /// Regression: `--lock-check-seconds 18446744073709551615` was accepted
    /// and tokio's interval panicked adding it to an `Instant`.
    #[test]
    fn lock_check_seconds_is_bounded() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: Args,
        }
        let parse = |value: &str| {
            <Serve as clap::Parser>::try_parse_from(["ldp", "--lock-check-seconds", value])
                .map(|s| s.args.lock_check_seconds)
        };
        assert_eq!(parse("1").unwrap(), 1);
        assert_eq!(parse("86400").unwrap(), 86_400);
        for bad in ["0", "86401", "18446744073709551615", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
