//! `ldp-loadgen`: C concurrent clients submit batches of B reports for T
//! seconds to a running aggregator over real gRPC, then print reports/s and
//! p50/p99/p99.9 acknowledgement latency (hdrhistogram). An acknowledgement
//! means the batch is committed to disk (the server acks after its group commit).
//!
//! Reports are encoded once with the SDK (GRR, seeded: this is a load test, not
//! a privacy deployment) and reused with a fresh batch id per request, so the
//! generator spends its CPU on gRPC, not on randomization.
//!
//! ```text
//! ldp serve --db /tmp/load.db --listen 127.0.0.1:50051 &
//! ldp-loadgen --token-file /tmp/load.db.token --clients 8 --batch 500 --duration 20
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ldp_benches::Latencies;
use ldp_proto::v1 as pb;
use ldp_sdk::mechanism::MechanismSpec;
use ldp_sdk::metric::MetricSpec;
use ldp_sdk::wire::{self, ReportHeader};
use ldp_sdk::{Epsilon, LdpRng};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Options.
#[derive(Debug, Parser)]
#[command(
    name = "ldp-loadgen",
    about = "gRPC load generator for the ldp aggregator"
)]
struct Args {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    connect: String,
    /// Bearer token (to create the metric), or use --token-file.
    #[arg(long, env = "LDP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Concurrent clients (C), each on its own connection.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Reports per batch (B).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Measured duration in seconds (T).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured warm-up in seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Metric to load (GRR over 16 values, epsilon 1; created if missing).
    #[arg(long, default_value = "loadgen.grr")]
    metric: String,
}

struct ClientResult {
    latencies: Latencies,
    reports: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = connect(&args.connect).await?;
    let spec = ensure_metric(&args, channel).await?;
    let pool = encode_pool(&spec, args.batch)?;
    let pool = Arc::new(pool);
    let run_id: u64 = rand::random();
    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = warmup_end + Duration::from_secs_f64(args.duration);

    let mut tasks = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let channel = connect(&args.connect).await?;
        let pool = pool.clone();
        tasks.push(tokio::spawn(run_client(
            channel,
            pool,
            run_id,
            client as u64,
            warmup_end,
            end,
        )));
    }
    let mut latencies = Latencies::default();
    let (mut reports, mut errors) = (0, 0);
    for task in tasks {
        let r = task.await??;
        latencies.merge(&r.latencies);
        reports += r.reports;
        errors += r.errors;
    }
    let secs = args.duration;
    println!(
        "clients {} batch {} duration {:.1} s: {:.0} reports/s, {:.0} batches/s, {} errors",
        args.clients,
        args.batch,
        secs,
        reports as f64 / secs,
        latencies.len() as f64 / secs,
        errors
    );
    println!("ack latency: {}", latencies.summary());
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

async fn run_client(
    channel: Channel,
    pool: Arc<Vec<Vec<pb::Report>>>,
    run_id: u64,
    client: u64,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ClientResult> {
    let mut collector = pb::collector_client::CollectorClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024 * 1024);
    let mut result = ClientResult {
        latencies: Latencies::default(),
        reports: 0,
        errors: 0,
    };
    let mut seq = 0u64;
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok(result);
        }
        let reports = pool[(seq as usize + client as usize) % pool.len()].clone();
        let n = reports.len() as u64;
        let mut batch_id = Vec::with_capacity(24);
        batch_id.extend_from_slice(&run_id.to_le_bytes());
        batch_id.extend_from_slice(&client.to_le_bytes());
        batch_id.extend_from_slice(&seq.to_le_bytes());
        seq += 1;
        let outcome = collector
            .submit(pb::SubmitRequest { batch_id, reports })
            .await;
        if started < measure_from {
            continue;
        }
        match outcome {
            Ok(_) => {
                result.latencies.record(started.elapsed());
                result.reports += n;
            }
            Err(status) => {
                result.errors += 1;
                if result.errors == 1 {
                    eprintln!("client {client}: {status}");
                }
            }
        }
    }
}

async fn ensure_metric(args: &Args, channel: Channel) -> anyhow::Result<MetricSpec> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)?,
        (None, None) => anyhow::bail!("give --token, LDP_TOKEN or --token-file"),
    };
    let header: MetadataValue<_> = format!("Bearer {}", token.trim()).parse()?;
    let mut admin = pb::admin_client::AdminClient::with_interceptor(
        channel,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", header.clone());
            Ok(r)
        },
    );
    let spec = MetricSpec::new(
        &args.metric,
        Epsilon::new(1.0)?,
        MechanismSpec::Grr { domain_size: 16 },
    );
    let created = admin
        .create_metric(pb::CreateMetricRequest {
            spec: Some(wire::metric_to_proto(&spec)?),
        })
        .await?
        .into_inner()
        .metric
        .context("no metric returned")?;
    Ok(wire::metric_from_proto(created)?)
}

/// 16 batches of `batch` GRR reports of a skewed distribution.
fn encode_pool(spec: &MetricSpec, batch: usize) -> anyhow::Result<Vec<Vec<pb::Report>>> {
    let mechanism = spec.mechanism()?;
    let mut rng = LdpRng::seeded_for_simulation(1);
    let header = ReportHeader {
        metric_id: spec.metric_id,
        metric_version: spec.version,
        epoch: 0,
    };
    (0..16)
        .map(|b| {
            (0..batch)
                .map(|i| {
                    let value = ((i * i + b) % 16) as u32;
                    Ok(wire::report_to_proto(
                        header,
                        &mechanism.encode_index(value, &mut rng)?,
                    )?)
                })
                .collect()
        })
        .collect()
}
