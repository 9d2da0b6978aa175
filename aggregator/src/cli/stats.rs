//! `ldp stats`: server counters and per-RPC latency percentiles (Admin.GetStats).

use comfy_table::Table;
use ldp_proto::v1 as pb;

use super::connect::ConnectArgs;

/// Options of `ldp stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// Runs `ldp stats`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut admin = args.conn.admin().await?;
    let s = admin.get_stats(pb::GetStatsRequest {}).await?.into_inner();
    println!(
        "uptime {} s; reports accepted {}; batches accepted {}, duplicate {}, rejected {}; \
         {} group commits (mean {:.1} batches each)",
        s.uptime_seconds,
        s.reports_accepted,
        s.batches_accepted,
        s.batches_duplicate,
        s.batches_rejected,
        s.group_commits,
        (s.batches_accepted + s.batches_duplicate) as f64 / s.group_commits.max(1) as f64
    );
    let mut table = Table::new();
    table.set_header([
        "method", "calls", "errors", "p50 us", "p99 us", "p99.9 us", "max us",
    ]);
    for r in &s.rpcs {
        table.add_row([
            r.method.clone(),
            r.calls.to_string(),
            r.errors.to_string(),
            r.p50_us.to_string(),
            r.p99_us.to_string(),
            r.p999_us.to_string(),
            r.max_us.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
