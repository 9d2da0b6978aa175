//! Client tests against a small in-memory Collector started on loopback.
//!
//! The mock keeps what a real aggregator keeps for these properties: the set of
//! committed batch ids (a known id is acknowledged as a duplicate and not
//! counted) and the number of stored reports. It can be told to answer the next
//! calls with given error statuses. The invariants checked: after recovery the
//! stored report count equals exactly the number of reports recorded (nothing
//! lost, nothing counted twice).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldp_proto::v1 as pb;
use pb::collector_server::{Collector, CollectorServer};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

use super::*;
use crate::Epsilon;
use crate::mechanism::MechanismSpec;
use crate::schema::Attribute;

#[derive(Default)]
struct State {
    ids: HashSet<Vec<u8>>,
    reports: u64,
    submit_calls: u64,
    batch_sizes: Vec<usize>,
    seen_ids: Vec<Vec<u8>>,
    inject: VecDeque<Code>,
    budgets: Vec<pb::DeviceBudget>,
}

#[derive(Clone, Default)]
struct Mock {
    state: Arc<Mutex<State>>,
}

#[tonic::async_trait]
impl Collector for Mock {
    async fn get_metrics(
        &self,
        _request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let metrics = published()
            .iter()
            .map(|m| wire::metric_to_proto(m).unwrap())
            .collect();
        Ok(Response::new(pb::GetMetricsResponse {
            metrics,
            server_time: unix_now(),
            device_budgets: self.state.lock().unwrap().budgets.clone(),
        }))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let batch = request.into_inner();
        let mut s = self.state.lock().unwrap();
        s.submit_calls += 1;
        s.seen_ids.push(batch.batch_id.clone());
        if let Some(code) = s.inject.pop_front() {
            return Err(Status::new(code, "injected"));
        }
        if !s.ids.insert(batch.batch_id) {
            return Ok(Response::new(pb::SubmitResponse {
                accepted: 0,
                duplicate: true,
            }));
        }
        s.reports += batch.reports.len() as u64;
        s.batch_sizes.push(batch.reports.len());
        Ok(Response::new(pb::SubmitResponse {
            accepted: batch.reports.len() as u32,
            duplicate: false,
        }))
    }
}

/// A running mock server; dropping it does not stop it, `stop` does.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(mock: Mock, addr: SocketAddr) -> Running {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CollectorServer::new(mock))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    rx.await.ok();
                },
            )
            .await
            .unwrap();
    });
    Running { addr, stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).ok();
        self.task.await.unwrap();
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// One attribute, three values: one report per record.
fn schema() -> Schema {
    Schema::new(vec![
        Attribute::categorical(
            "color",
            ["red", "green", "blue"],
            "app.color",
            MechanismSpec::Grr { domain_size: 3 },
            Epsilon::new(1.0).unwrap(),
        )
        .unwrap(),
    ])
    .unwrap()
}

fn published() -> Vec<MetricSpec> {
    let mut m = schema().metrics();
    m[0].metric_id = 7;
    m[0].version = 1;
    m
}

fn config(addr: SocketAddr, dir: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(format!("http://{addr}"), dir);
    c.batch_size = 10;
    c.batch_interval = Duration::from_secs(3600);
    c.retry = RetryPolicy {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(50),
        max_exhausted: 3,
    };
    c.request_timeout = Duration::from_secs(2);
    c.flush_timeout = Duration::from_secs(10);
    c
}

fn green() -> Record {
    Record::new().with("color", "green")
}

#[tokio::test]
async fn batches_by_size_and_sends_everything_once() {
    let mock = Mock::default();
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::connect(config(server.addr, dir.path()), schema())
        .await
        .unwrap();
    assert_eq!(client.metrics()[0].metric_id, 7);
    for _ in 0..25 {
        client.record(&green()).unwrap();
    }
    let stats = client.flush().await.unwrap();
    assert_eq!(stats.reports_accepted, 25);
    {
        let s = mock.state.lock().unwrap();
        assert_eq!(s.batch_sizes, vec![10, 10, 5]);
        assert_eq!(s.reports, 25);
    }
    server.stop().await;
}

#[tokio::test]
async fn seals_by_time() {
    let mock = Mock::default();
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.addr, dir.path());
    cfg.batch_interval = Duration::from_millis(50);
    let client = Client::connect(cfg, schema()).await.unwrap();
    for _ in 0..3 {
        client.record(&green()).unwrap();
    }
    // No flush: the sender must seal and send the 3-report batch by its age.
    for _ in 0..200 {
        if mock.state.lock().unwrap().reports == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.state.lock().unwrap().batch_sizes, vec![3]);
    server.stop().await;
}

#[tokio::test]
async fn retries_unavailable_and_resource_exhausted_but_not_invalid_argument() {
    let mock = Mock::default();
    mock.state
        .lock()
        .unwrap()
        .inject
        .extend([Code::Unavailable, Code::ResourceExhausted]);
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::connect(config(server.addr, dir.path()), schema())
        .await
        .unwrap();
    for _ in 0..5 {
        client.record(&green()).unwrap();
    }
    let stats = client.flush().await.unwrap();
    assert_eq!((stats.retries, stats.reports_accepted), (2, 5));
    {
        let s = mock.state.lock().unwrap();
        assert_eq!(s.submit_calls, 3);
        assert!(
            s.seen_ids.windows(2).all(|w| w[0] == w[1]),
            "retries reuse the id"
        );
    }

    mock.state
        .lock()
        .unwrap()
        .inject
        .push_back(Code::InvalidArgument);
    client.record(&green()).unwrap();
    let stats = client.flush().await.unwrap();
    assert_eq!((stats.batches_rejected, stats.retries), (1, 2));
    assert_eq!(mock.state.lock().unwrap().submit_calls, 4, "not retried");
    assert_eq!(
        std::fs::read_dir(dir.path().join("rejected"))
            .unwrap()
            .count(),
        1
    );
    server.stop().await;
}

#[test]
fn backoff_grows_exponentially_within_jitter_bounds() {
    let policy = RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        max_exhausted: 10,
    };
    let mut rng = LdpRng::seeded_for_simulation(1);
    for attempt in 0..40 {
        let bound = (100u64 << attempt.min(20)).min(2000);
        for _ in 0..50 {
            let d = policy.delay(attempt, &mut rng).as_millis() as u64;
            assert!(
                (bound / 2..=bound).contains(&d),
                "attempt {attempt}: {d} ms"
            );
        }
    }
    assert!(is_retryable(Code::Unavailable) && is_retryable(Code::ResourceExhausted));
    assert!(!is_retryable(Code::InvalidArgument));
}

/// A batch the server keeps refusing as too large (RESOURCE_EXHAUSTED) is
/// retried `max_exhausted` (3) times in all, then set aside, so the batches
/// behind it still go out; `rejected/` keeps only the newest 64 batches.
#[tokio::test]
async fn resource_exhausted_gives_up_after_max_exhausted_and_rejected_is_capped() {
    let mock = Mock::default();
    mock.state
        .lock()
        .unwrap()
        .inject
        .extend([Code::ResourceExhausted; 3]);
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(server.addr, dir.path());
    c.batch_size = 1;
    let client = Client::connect(c, schema()).await.unwrap();
    client.record(&green()).unwrap();
    client.record(&green()).unwrap();
    let stats = client.flush().await.unwrap();
    assert_eq!(
        (
            stats.retries,
            stats.batches_rejected,
            stats.reports_accepted
        ),
        (2, 1, 1)
    );
    assert_eq!(mock.state.lock().unwrap().submit_calls, 4);

    // 70 more refused batches: only the newest 64 stay on disk.
    mock.state
        .lock()
        .unwrap()
        .inject
        .extend([Code::InvalidArgument; 70]);
    for _ in 0..70 {
        client.record(&green()).unwrap();
    }
    let stats = client.flush().await.unwrap();
    assert_eq!(stats.batches_rejected, 71);
    let mut kept: Vec<u64> = std::fs::read_dir(dir.path().join("rejected"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name["batch-".len()..name.len() - ".pb".len()]
                .parse()
                .unwrap()
        })
        .collect();
    kept.sort_unstable();
    assert_eq!(kept.len(), queue::MAX_REJECTED);
    // Sequence numbers of the 72 sealed batches are consecutive; the 64 kept
    // are the last 64 refused ones.
    assert_eq!(kept.windows(2).filter(|w| w[1] != w[0] + 1).count(), 0);
    client.close().await.unwrap();
    server.stop().await;
}

/// An offline period, a crash while offline, and a server started later: every
/// report arrives exactly once.
#[tokio::test]
async fn offline_period_then_recovery_loses_nothing_and_counts_nothing_twice() {
    let mock = Mock::default();
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then keep the server down.
    let addr = {
        let l = std::net::TcpListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    };
    // Never reached the server, no cached specs: a typed error.
    let err = Client::connect(config(addr, dir.path()), schema())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");

    // Online once, to cache the specs.
    let server = serve(mock.clone(), addr).await;
    Client::connect(config(addr, dir.path()), schema())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    server.stop().await;

    // Offline: record 23 reports (two sealed batches and 3 open), flush fails.
    let mut cfg = config(addr, dir.path());
    cfg.flush_timeout = Duration::from_millis(300);
    let client = Client::connect(cfg.clone(), schema()).await.unwrap();
    for _ in 0..23 {
        client.record(&green()).unwrap();
    }
    let err = client.flush().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Pending {
                batches: 3,
                reports: 23,
                ..
            }
        ),
        "{err}"
    );
    // Crash while offline, with one more record in the open batch.
    client.record(&green()).unwrap();
    drop(client);

    // A new process, still offline, records more; then the server comes back.
    let client = Client::connect(cfg, schema()).await.unwrap();
    assert_eq!(client.pending(), (3, 23, 1));
    for _ in 0..6 {
        client.record(&green()).unwrap();
    }
    let server = serve(mock.clone(), addr).await;
    let stats = client.flush().await.unwrap();
    assert_eq!(stats.batches_duplicate, 0);
    assert_eq!(mock.state.lock().unwrap().reports, 30);
    assert_eq!(client.pending(), (0, 0, 0));
    server.stop().await;
}

/// The process dies after the server committed a batch but before the
/// acknowledgement was recorded: the next process resends the same id and the
/// server does not count it again.
#[tokio::test]
async fn a_kill_between_send_and_ack_resends_the_same_batch_id() {
    let mock = Mock::default();
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.addr, dir.path());
    // Attempts fail, so the batch is still queued when we "kill" the client.
    cfg.flush_timeout = Duration::from_millis(200);
    mock.state
        .lock()
        .unwrap()
        .inject
        .extend([Code::Unavailable; 1000]);
    let client = Client::connect(cfg.clone(), schema()).await.unwrap();
    for _ in 0..4 {
        client.record(&green()).unwrap();
    }
    assert!(client.flush().await.is_err());
    drop(client); // killed
    mock.state.lock().unwrap().inject.clear();

    // What the killed process's in-flight send did: the server committed it.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "pb") && p.file_name().unwrap() != "metrics.pb"
        })
        .unwrap();
    let batch = pb::SubmitRequest::decode(std::fs::read(&file).unwrap().as_slice()).unwrap();
    let mut raw = pb::collector_client::CollectorClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    raw.submit(batch.clone()).await.unwrap();
    assert_eq!(mock.state.lock().unwrap().reports, 4);

    cfg.flush_timeout = Duration::from_secs(10);
    let client = Client::connect(cfg, schema()).await.unwrap();
    let stats = client.flush().await.unwrap();
    assert_eq!((stats.batches_duplicate, stats.reports_accepted), (1, 0));
    let s = mock.state.lock().unwrap();
    assert_eq!(s.reports, 4, "counted once");
    assert_eq!(s.seen_ids.last(), Some(&batch.batch_id));
    assert!(
        s.seen_ids.iter().all(|id| *id == batch.batch_id),
        "one id throughout"
    );
}

#[tokio::test]
async fn records_that_do_not_fit_the_schema_are_typed_errors() {
    let mock = Mock::default();
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::connect(config(server.addr, dir.path()), schema())
        .await
        .unwrap();
    let err = client
        .record(&Record::new().with("color", "purple"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Schema(SchemaError::UnknownCategory { .. })
        ),
        "{err}"
    );
    assert_eq!(client.stats().records, 0);
    server.stop().await;
}

/// The operator tightens a published device budget while a client runs: the
/// client's periodic refresh registers it, and the ledger then refuses what the
/// new budget does not allow.
#[tokio::test]
async fn a_tightened_published_budget_reaches_a_running_client() {
    use crate::budget::{BudgetPolicy, DeviceLedger};
    let published_budget = |lifetime: f64| {
        let policy = BudgetPolicy::new(lifetime, 86_400, lifetime).unwrap();
        vec![wire::device_budget_to_proto("app.color", &policy)]
    };
    let mock = Mock::default();
    mock.state.lock().unwrap().budgets = published_budget(100.0);
    let server = serve(mock.clone(), loopback()).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(DeviceLedger::open(dir.path().join("ledger")).unwrap());
    let mut c = config(server.addr, &dir.path().join("queue")).with_device_ledger(ledger.clone());
    c.budget_refresh = Some(Duration::from_millis(20));
    let client = Client::connect(c, schema()).await.unwrap();
    let usage = |ledger: &DeviceLedger| ledger.usage("app.color", unix_now() as u64).unwrap();
    assert_eq!(usage(&ledger).policy.lifetime_epsilon, 100.0);
    // Two records (epsilon 1 each) fit the first budget.
    client.record(&green()).unwrap();
    client.record(&green()).unwrap();
    // Tightened to a lifetime of 2.5: one more record would exceed it.
    mock.state.lock().unwrap().budgets = published_budget(2.5);
    let deadline = Instant::now() + Duration::from_secs(20);
    while usage(&ledger).policy.lifetime_epsilon != 2.5 {
        assert!(
            Instant::now() < deadline,
            "the refresh never registered the budget"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        client.record(&green()),
        Err(ClientError::Budget(crate::Error::BudgetExhausted(_)))
    ));
    // A looser budget later never loosens the ledger: wait for two more
    // registered refreshes after publishing it.
    mock.state.lock().unwrap().budgets = published_budget(50.0);
    let refreshed = client.stats().budget_refreshes;
    while client.stats().budget_refreshes < refreshed + 2 {
        assert!(
            Instant::now() < deadline,
            "no refresh after the looser budget"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(usage(&ledger).policy.lifetime_epsilon, 2.5);
    // A malformed budget beside a valid one: the valid one is still
    // registered, the failure is counted and explained.
    let mut bad = published_budget(2.0);
    bad.insert(
        0,
        pb::DeviceBudget {
            metric: "app.other".into(),
            window_epsilon: f64::NAN,
            window_seconds: 0,
            lifetime_epsilon: -1.0,
        },
    );
    mock.state.lock().unwrap().budgets = bad;
    while usage(&ledger).policy.lifetime_epsilon != 2.0 {
        assert!(
            Instant::now() < deadline,
            "the valid budget was not registered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while client.stats().budget_refresh_failures == 0 {
        assert!(
            Instant::now() < deadline,
            "the malformed budget was not reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.budget_refresh_error().is_some());
    drop(client);
    server.stop().await;
}
