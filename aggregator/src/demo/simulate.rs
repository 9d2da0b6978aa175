//! The simulated devices: a few client tasks, each one [`Client`] with its own
//! on-disk queue, randomizing and sending the records of its share of devices.
//!
//! Device `j` belongs to task `j mod clients`. Per device the work is one record
//! lookup, 13 randomizations and one append to the queue's log; reports travel in
//! batches. A task pauses while its client has more than [`MAX_BACKLOG`] sealed
//! batches waiting, so memory and disk stay bounded however many devices run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use ldp_sdk::client::ClientConfig;
use ldp_sdk::schema::{Schema, Value};
use ldp_sdk::{Client, LdpRng};
use rand::RngExt;

use super::{DemoConfig, DemoError, NUMERIC_ATTRIBUTES};
use crate::dataset::adult;

/// Sealed batches a client may have in flight before its task waits.
const MAX_BACKLOG: usize = 8;
/// Devices between progress updates and cooperative yields.
const CHUNK: u64 = 256;

/// The ground truth of the simulated devices.
#[derive(Debug, Clone, Default)]
pub(super) struct Truth {
    pub(super) devices: u64,
    /// Per categorical attribute, the count of each value.
    pub(super) categorical: Vec<Vec<u64>>,
    /// Per numeric attribute, the sum of the values.
    pub(super) numeric_sums: Vec<f64>,
}

impl Truth {
    fn new() -> Self {
        Self {
            devices: 0,
            categorical: adult::CATEGORICAL
                .iter()
                .map(|(_, labels)| vec![0; labels.len()])
                .collect(),
            numeric_sums: vec![0.0; NUMERIC_ATTRIBUTES.len()],
        }
    }

    fn add(&mut self, record: &adult::Record, numeric: &[usize]) {
        self.devices += 1;
        for (counts, &v) in self.categorical.iter_mut().zip(&record.categorical) {
            counts[v as usize] += 1;
        }
        for (sum, &i) in self.numeric_sums.iter_mut().zip(numeric) {
            *sum += record.numeric[i];
        }
    }

    fn merge(&mut self, other: &Truth) {
        self.devices += other.devices;
        for (a, b) in self.categorical.iter_mut().zip(&other.categorical) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (a, b) in self.numeric_sums.iter_mut().zip(&other.numeric_sums) {
            *a += b;
        }
    }
}

/// Two independent simulation streams per task: one for the randomizers, one
/// for resampling. Distinct odd multipliers keep the streams apart.
fn task_seeds(seed: u64, task: u64) -> (u64, u64) {
    let base = seed ^ task.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (base, base ^ 0xD1B5_4A32_D192_ED03)
}

/// Runs every device and waits until every report is acknowledged.
pub(super) async fn run(
    config: &DemoConfig,
    records: &[adult::Record],
    schema: &Schema,
    url: &str,
    work: &Path,
) -> Result<Truth, DemoError> {
    if records.is_empty() {
        return Err(DemoError::Config("the data file has no records".into()));
    }
    let devices = config.devices.unwrap_or(records.len() as u64);
    let numeric: Vec<usize> = NUMERIC_ATTRIBUTES
        .iter()
        .map(|name| {
            adult::NUMERIC
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| DemoError::Config(format!("no numeric attribute {name:?}")))
        })
        .collect::<Result<_, _>>()?;
    let progress = if config.progress {
        ProgressBar::with_draw_target(Some(devices), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} devices {human_pos}/{human_len} [{bar:40}] {rate} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} devices/s", state.per_sec());
            },
        )
        .progress_chars("=> "),
    );
    let shared = Arc::new((records.to_vec(), numeric));
    let ca_pem = match &config.ca_cert {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            DemoError::Setup(format!("reading CA certificate {}: {e}", path.display()))
        })?),
        None => None,
    };
    let clients = config.clients as u64;
    let mut tasks = Vec::new();
    for task in 0..clients {
        let mut client_config = ClientConfig::new(url, work.join(format!("device-queue-{task}")));
        client_config.batch_size = config.batch_size;
        client_config.batch_interval = Duration::from_secs(1);
        client_config.flush_timeout = Duration::from_secs(600);
        client_config.tls_ca_pem = ca_pem.clone();
        let (rng, mut resample) = match config.seed {
            Some(seed) => {
                let (a, b) = task_seeds(seed, task);
                (
                    LdpRng::seeded_for_simulation(a),
                    LdpRng::seeded_for_simulation(b),
                )
            }
            None => (LdpRng::from_os(), LdpRng::from_os()),
        };
        let client = Client::connect_with_rng(client_config, schema.clone(), rng).await?;
        let shared = Arc::clone(&shared);
        let progress = progress.clone();
        let resampled = config.devices.is_some();
        tasks.push(tokio::spawn(async move {
            let (records, numeric) = &*shared;
            let mut truth = Truth::new();
            let mut values: Vec<Value> = Vec::with_capacity(13);
            let mut done = 0u64;
            let mut j = task;
            while j < devices {
                let record = if resampled {
                    &records[resample.random_range(0..records.len())]
                } else {
                    &records[j as usize]
                };
                values.clear();
                values.extend(record.categorical.iter().map(|&v| Value::Index(v)));
                values.extend(numeric.iter().map(|&i| Value::Number(record.numeric[i])));
                client.record_values(&values)?;
                truth.add(record, numeric);
                done += 1;
                j += clients;
                if done.is_multiple_of(CHUNK) {
                    progress.inc(CHUNK);
                    tokio::task::yield_now().await;
                    while client.pending().0 > MAX_BACKLOG {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            progress.inc(done % CHUNK);
            client.close().await?;
            Ok::<_, DemoError>(truth)
        }));
    }
    let mut truth = Truth::new();
    for task in tasks {
        let part = task
            .await
            .map_err(|e| DemoError::Setup(format!("client task failed: {e}")))??;
        truth.merge(&part);
    }
    progress.finish_and_clear();
    Ok(truth)
}
