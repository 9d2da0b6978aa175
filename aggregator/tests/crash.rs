//! Crash safety of `ldp serve` (a separate process, killed with SIGKILL).
//!
//! Invariant: every acknowledged report is counted exactly once after a
//! restart. Four clients stream batches with distinct ids; the server is
//! killed mid-stream. After the restart:
//! - the report count lies between the acknowledged total and the acknowledged
//!   plus in-flight total (none lost);
//! - resubmitting every acknowledged batch is answered `duplicate` (they were
//!   durable before the ack), and resubmitting the in-flight ones stores each at
//!   most once; the final statistics then equal exactly those of the distinct
//!   batches (none doubled).
//!
//! It lives in the aggregator crate because it needs the `ldp` binary
//! (`CARGO_BIN_EXE_ldp`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ldp_aggregator::service::auth::{ClientAuth, Token};
use ldp_proto::v1 as pb;
use ldp_sdk::Epsilon;
use ldp_sdk::estimate::Stats;
use ldp_sdk::mechanism::{MechanismSpec, Report};
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use tokio::sync::Mutex;
use tonic::transport::Channel;

const TOKEN: &str = "crash-test-token";
const BATCH: usize = 100;

struct Ldp {
    child: Child,
    url: String,
}

impl Drop for Ldp {
    /// A failing test must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(dir: &std::path::Path) -> anyhow::Result<Ldp> {
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN)?;
    #[cfg(unix)]
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ldp"))
        .args(["--log", "warn", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("ldp.db"))
        .arg("--token-file")
        .arg(&token_file)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("unexpected first line {line:?}"))?;
    Ok(Ldp {
        url: format!("http://{addr}"),
        child,
    })
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(url.to_string())?.connect().await?)
}

/// Batch `n`: BATCH reports of value `(n + i) % 4`, a distinct 16-byte id.
fn batch(spec: &MetricSpec, n: u64) -> pb::SubmitRequest {
    let header = ReportHeader {
        metric_id: spec.metric_id,
        metric_version: spec.version,
        epoch: 0,
    };
    let reports = (0..BATCH as u64)
        .map(|i| wire::report_to_proto(header, &Report::Index(((n + i * 3) % 4) as u32)))
        .collect::<Result<Vec<_>, _>>()
        .expect("index reports have a wire form");
    let mut batch_id = b"crash-batch-".to_vec();
    batch_id.extend_from_slice(&n.to_le_bytes());
    pb::SubmitRequest { batch_id, reports }
}

async fn estimate(url: &str) -> anyhow::Result<pb::FrequencyEstimate> {
    let token = Token::new(TOKEN).map_err(anyhow::Error::msg)?;
    let mut analytics = pb::analytics_client::AnalyticsClient::with_interceptor(
        channel(url).await?,
        ClientAuth::new(&token),
    );
    Ok(analytics
        .estimate_frequencies(pb::EstimateRequest {
            metric: "crash.grr".into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_submits_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = spawn_server(dir.path())?;
    let token = Token::new(TOKEN).map_err(anyhow::Error::msg)?;
    let mut admin = pb::admin_client::AdminClient::with_interceptor(
        channel(&server.url).await?,
        ClientAuth::new(&token),
    );
    let spec = MetricSpec::new(
        "crash.grr",
        Epsilon::new(1.0)?,
        MechanismSpec::Grr { domain_size: 4 },
    );
    let created = admin
        .create_metric(pb::CreateMetricRequest {
            spec: Some(wire::metric_to_proto(&spec)?),
        })
        .await?
        .into_inner()
        .metric
        .ok_or_else(|| anyhow::anyhow!("no metric"))?;
    let spec = wire::metric_from_proto(created)?;

    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let in_flight = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (acked, in_flight, stop, spec) =
            (acked.clone(), in_flight.clone(), stop.clone(), spec.clone());
        let mut collector = pb::collector_client::CollectorClient::new(channel(&server.url).await?);
        clients.push(tokio::spawn(async move {
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                match collector.submit(batch(&spec, n)).await {
                    Ok(_) => acked.lock().await.push(n),
                    Err(_) => {
                        // The server died with this batch in flight: unknown outcome.
                        in_flight.lock().await.push(n);
                        return;
                    }
                }
                n += 4;
            }
        }));
    }
    // Let some batches commit, then SIGKILL the server mid-stream.
    while acked.lock().await.len() < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill()?;
    server.child.wait()?;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    let acked = acked.lock().await.clone();
    let in_flight = in_flight.lock().await.clone();
    assert!(!acked.is_empty());
    eprintln!(
        "killed with {} batches acknowledged and {} in flight",
        acked.len(),
        in_flight.len()
    );

    let server = spawn_server(dir.path())?;
    let after_crash = estimate(&server.url).await?.reports;
    let acked_reports = (acked.len() * BATCH) as u64;
    let max_reports = ((acked.len() + in_flight.len()) * BATCH) as u64;
    assert!(
        (acked_reports..=max_reports).contains(&after_crash),
        "after the crash {after_crash} reports; acknowledged {acked_reports}, at most {max_reports}"
    );

    let mut collector = pb::collector_client::CollectorClient::new(channel(&server.url).await?);
    for &n in &acked {
        let ack = collector.submit(batch(&spec, n)).await?.into_inner();
        assert!(ack.duplicate, "acknowledged batch {n} was not durable");
    }
    for &n in &in_flight {
        collector.submit(batch(&spec, n)).await?;
    }
    // Expected statistics of the distinct batches, estimated with the SDK.
    let mechanism = spec.mechanism()?;
    let mut expected = Stats::new(mechanism.stats_len());
    for n in acked.iter().chain(&in_flight) {
        for r in batch(&spec, *n).reports {
            let (_, report) = wire::report_from_proto(r)?;
            mechanism.accumulate(&mut expected, &report)?;
        }
    }
    let want = mechanism.estimate_frequencies(&expected)?;
    let got = estimate(&server.url).await?;
    assert_eq!(got.reports, expected.reports, "reports doubled or lost");
    for (g, w) in got.values.iter().zip(&want) {
        // Same counts give the same estimate up to float rounding.
        assert!(
            (g.estimate - w.value).abs() <= 1e-6 * w.value.abs().max(1.0),
            "{g:?} vs {w:?}"
        );
    }
    Ok(())
}
