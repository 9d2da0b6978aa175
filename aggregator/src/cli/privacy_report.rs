//! `ldp privacy-report --db PATH|URL --out DIR`: the auditor's privacy report
//! (`privacy-report.json` and `privacy-report.html` in `DIR`), built by
//! [`PrivacyReport::build`] from the server's database: every stored metric
//! version with its mechanism, parameters, epsilon per report, eps_inf and the
//! published device budget, and every recorded central release with its
//! accountant, parameters and (epsilon, delta), per data set with its budget
//! and spend.
//!
//! It reads the database directly (a SQLite file, or a `postgres://` URL as
//! `ldp serve --db` takes) rather than asking a running server, so an auditor
//! needs no token and sees exactly what is stored, not what a server's
//! configuration claims. The database may belong to a running server: each of
//! the three reads (metric versions, device budgets, the ledger's budgets and
//! releases) sees committed data only, but they are separate transactions, so
//! a report built while the server writes may combine states a moment apart
//! (the metric versions from before an Admin write, the ledger from after it).
//! For an exact audit, build it while no Admin write runs, or twice and
//! compare. It is opened read-only and never migrated
//! ([`Database::open_read_only`]): a PostgreSQL role with `USAGE` on the
//! schema and `SELECT` on its tables is enough, and a database whose schema is
//! older or newer than this binary's is refused with an error naming both,
//! rather than migrated under a live server.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::accountant::report::PrivacyReport;
use crate::ingest::unix_now;
use crate::store::Database;

/// Options of `ldp privacy-report`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The server's database: its SQLite file or its `postgres://` URL.
    #[arg(long, value_parser = super::DbValueParser)]
    pub db: Database,
    /// Directory to write `privacy-report.json` and `privacy-report.html` to.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `ldp privacy-report`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let report = from_db(&args.db).await?;
    let (json, html) = write(&report, &args.out)?;
    println!(
        "privacy report: {} metric versions, {} data sets; wrote {} and {}",
        report.metrics.len(),
        report.datasets.len(),
        json.display(),
        html.display()
    );
    Ok(())
}

/// Builds the report from the database `db` (which must exist).
pub async fn from_db(db: &Database) -> anyhow::Result<PrivacyReport> {
    if let Database::Sqlite(path) = db {
        anyhow::ensure!(path.is_file(), "no database file at {}", path.display());
    }
    let store = db
        .open_read_only()
        .await
        .with_context(|| format!("opening {db} read-only"))?;
    let specs = store.load_metrics().await?;
    let device = store.device_budgets().await?;
    let ledger = store.load_ledger().await?;
    store.close().await?;
    let metrics: Vec<_> = specs
        .into_iter()
        .map(|spec| {
            let policy = device
                .iter()
                .find(|(name, _)| *name == spec.name)
                .map(|(_, p)| *p);
            (spec, policy)
        })
        .collect();
    Ok(PrivacyReport::build(&metrics, &ledger, unix_now())?)
}

/// Writes `privacy-report.json` and `privacy-report.html` into `dir` (created
/// if missing); returns their paths.
pub fn write(report: &PrivacyReport, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("privacy-report.json");
    let html = dir.join("privacy-report.html");
    std::fs::write(&json, report.to_json())
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&html, report.to_html())
        .with_context(|| format!("writing {}", html.display()))?;
    Ok((json, html))
}
