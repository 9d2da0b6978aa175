//! The `ldp` binary as an operator or analyst uses it: a real process, mostly
//! against an in-process server on an ephemeral port. Each test pins defects
//! found by using the CLI (named in its doc). The invariant behind them: a bad
//! input gives an `error: ...` line and a failure status, never a panic, a
//! backtrace or INTERNAL; an answer that is not an estimate is never printed as
//! one.
//!
//! It lives in the aggregator crate because it needs the `ldp` binary
//! (`CARGO_BIN_EXE_ldp`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ldp_aggregator::server::{Config, RunningServer, Server};
use ldp_aggregator::service::auth::Token;

const TOKEN: &str = "cli-test-token";

async fn server(dir: &Path) -> anyhow::Result<RunningServer> {
    let token = Token::new(TOKEN).map_err(anyhow::Error::msg)?;
    let config = Config::new("127.0.0.1:0".parse()?, dir.join("ldp.db"), &token);
    Ok(Server::start(config).await?)
}

/// `ldp <args>` with the connection and token of `server` in its environment.
fn ldp(server: &RunningServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ldp"));
    command
        .args(args)
        .env("LDP_CONNECT", server.url())
        .env("LDP_TOKEN", TOKEN)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    command
}

/// Runs a client command off the async runtime (the server runs on it).
async fn run(mut command: Command) -> anyhow::Result<Output> {
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn create_metric(server: &RunningServer, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["metric", "create"];
    all.extend_from_slice(args);
    let out = run(ldp(server, &all)).await?;
    anyhow::ensure!(out.status.success(), "create failed: {}", text(&out.stderr));
    Ok(())
}

/// Regression: `ldp estimate` on a metric without reports printed a table of
/// zero estimates with zero standard errors, as if the share of every value
/// were known to be exactly 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_without_reports_says_so_in_every_format() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path()).await?;
    let color = [
        "--name",
        "app.color",
        "--mechanism",
        "grr",
        "--epsilon",
        "1",
    ];
    create_metric(
        &server,
        &[&color[..], &["--categories", "red,green"]].concat(),
    )
    .await?;
    let age = [
        "--name",
        "app.age",
        "--mechanism",
        "duchi",
        "--epsilon",
        "1",
    ];
    create_metric(&server, &[&age[..], &["--lo", "0", "--hi", "100"]].concat()).await?;
    for metric in ["app.color", "app.age"] {
        let estimate = |format: &str| {
            ldp(
                &server,
                &["estimate", "--metric", metric, "--format", format],
            )
        };
        let table = run(estimate("table")).await?;
        assert!(table.status.success(), "{}", text(&table.stderr));
        let table = text(&table.stdout);
        assert!(table.contains("no reports"), "{metric}: {table}");
        assert!(!table.contains("0.0"), "{metric} printed numbers: {table}");

        let json = run(estimate("json")).await?;
        assert!(json.status.success(), "{}", text(&json.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout)?;
        assert_eq!(doc["status"], "no_reports", "{metric}: {doc}");
        assert_eq!(doc["reports"], 0, "{metric}: {doc}");
        if metric == "app.age" {
            assert!(doc["mean"].is_null(), "{doc}");
        } else {
            assert_eq!(doc["values"], serde_json::json!([]), "{doc}");
        }

        let csv = run(estimate("csv")).await?;
        assert!(csv.status.success(), "{}", text(&csv.stderr));
        assert_eq!(
            text(&csv.stdout).lines().count(),
            1,
            "{metric}: header only"
        );
        assert!(text(&csv.stderr).contains("no reports"), "{metric}");
    }
    server.shutdown().await?;
    Ok(())
}

/// Regression: `--confidence 0` was sent as 0, which the server reads as
/// "default", so a typo silently gave 95% intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_with_one_clear_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path()).await?;
    let color = [
        "--name",
        "app.color",
        "--mechanism",
        "grr",
        "--epsilon",
        "1",
    ];
    create_metric(
        &server,
        &[&color[..], &["--categories", "red,green"]].concat(),
    )
    .await?;
    let cases: &[(&[&str], &str)] = &[
        (
            &["estimate", "--metric", "app.color", "--confidence", "0"],
            "--confidence",
        ),
        (
            &["estimate", "--metric", "app.color", "--confidence", "1"],
            "--confidence",
        ),
        (
            &["estimate", "--metric", "app.color", "--confidence", "NaN"],
            "--confidence",
        ),
        (&["estimate", "--metric", "nope"], "nope"),
        (&["metric", "show", "nope"], "nope"),
        (
            &[
                "metric",
                "create",
                "--name",
                "bad name",
                "--mechanism",
                "grr",
                "--epsilon",
                "1",
                "--domain-size",
                "4",
            ],
            "name",
        ),
        (
            &[
                "metric",
                "create",
                "--name",
                "x",
                "--mechanism",
                "grr",
                "--epsilon",
                "0",
                "--domain-size",
                "4",
            ],
            "epsilon",
        ),
        (
            &[
                "metric",
                "create",
                "--name",
                "x",
                "--mechanism",
                "grr",
                "--epsilon",
                "1",
            ],
            "domain",
        ),
        (
            &[
                "metric",
                "create",
                "--name",
                "x",
                "--mechanism",
                "duchi",
                "--epsilon",
                "1",
                "--lo",
                "5",
                "--hi",
                "1",
            ],
            "",
        ),
    ];
    for (args, needle) in cases {
        let out = run(ldp(&server, args)).await?;
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} succeeded: {}",
            text(&out.stdout)
        );
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{args:?}: {stderr}");
        assert!(first.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Internal"), "{args:?}: {stderr}");
    }
    server.shutdown().await?;
    Ok(())
}

/// Regression: `ldp metric list | head -1` panicked with "failed printing to
/// stdout: Broken pipe" and a backtrace once `head` had exited; `ldp rappor
/// decode ... | head -1` failed with "error: Broken pipe".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_stops_quietly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path()).await?;
    let color = [
        "--name",
        "app.color",
        "--mechanism",
        "grr",
        "--epsilon",
        "1",
    ];
    create_metric(
        &server,
        &[&color[..], &["--categories", "red,green"]].concat(),
    )
    .await?;
    for args in [
        &["metric", "list"][..],
        &["stats"],
        &["metric", "show", "app.color"],
    ] {
        let mut command = ldp(&server, args);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "1");
        let out = tokio::task::spawn_blocking(move || -> std::io::Result<Output> {
            let mut child = command.spawn()?;
            // Close the read end before the command has connected, let alone printed.
            drop(child.stdout.take());
            child.wait_with_output()
        })
        .await??;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // `ldp rappor decode | head -1`: the first line is read, then the pipe
    // closes while later lines are written with `writeln!`, whose error was
    // printed as "error: Broken pipe (os error 32)" with a failure exit.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rappor/words-small");
    let mut command = ldp(&server, &["--log", "warn", "rappor", "decode"]);
    command
        .arg("--params")
        .arg(case.join("params.csv"))
        .arg("--counts")
        .arg(case.join("counts.csv"))
        .arg("--candidates")
        .arg(case.join("candidates.txt"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<Output> {
        use std::io::BufRead;
        let mut child = command.spawn()?;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first)?;
        assert!(first.contains("reports in 64 cohorts"), "{first}");
        child.wait_with_output()
    })
    .await??;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
    server.shutdown().await?;
    Ok(())
}

/// Regression: log lines carried ANSI colour codes when stderr was a file or a
/// pipe (`ldp serve 2> ldp.log`).
#[test]
fn logs_are_not_coloured_off_a_terminal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("ldp.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ldp"))
        .args(["--log", "info", "serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("ldp.db"))
        .env("LDP_TOKEN", TOKEN)
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    child.kill()?;
    child.wait()?;
    assert!(line.starts_with("listening on"), "{line:?}");
    let logged = std::fs::read_to_string(&log)?;
    assert!(logged.contains("serving"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "escape codes in {logged:?}");
    Ok(())
}

/// Regressions: `--lo -40` was read as an unknown flag, so a numeric metric
/// could not have a negative range; `ldp metric list --format csv` wrote the
/// mechanism label (`hybrid(hi=50.0, lo=-40.0)`) unquoted, splitting it into
/// two CSV fields; `--token-file` was an error whenever `LDP_TOKEN` was set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_ranges_and_csv_listing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path()).await?;
    let temp = [
        "--name",
        "room.temp",
        "--mechanism",
        "hybrid",
        "--epsilon",
        "1",
    ];
    create_metric(
        &server,
        &[&temp[..], &["--lo", "-40", "--hi", "50"]].concat(),
    )
    .await?;
    // Regression: with LDP_TOKEN exported (as `ldp` helps every command here),
    // `--token-file` was refused as conflicting with `--token`.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN)?;
    let mut list = ldp(
        &server,
        &["metric", "list", "--format", "csv", "--token-file"],
    );
    list.arg(&token_file).env("LDP_TOKEN", "a-stale-token");
    let out = run(list).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let row = csv.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("room.temp,1,1,\"hybrid(") && row.ends_with("\",1,0"),
        "{csv}"
    );
    server.shutdown().await?;
    Ok(())
}

/// `ldp metric create --mechanism rappor`: epsilon defaults to the parameters'
/// eps_1 (h = 2, f = 0.5, p = 0.25, q = 0.75: q* = 0.625, p* = 0.375 and
/// eps_1 = h ln(q* (1 - p*) / (p* (1 - q*))) = 4 ln(5/3) = 2.0433), a
/// smaller declared epsilon is refused (it would understate the loss), and the
/// metric can then be decoded over gRPC (no reports yet: nothing detected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rappor_metrics_from_the_cli() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path()).await?;
    let rappor = [
        "--name",
        "app.words",
        "--mechanism",
        "rappor",
        "--num-bits",
        "32",
    ];
    create_metric(&server, &rappor).await?;
    let out = run(ldp(&server, &["metric", "list", "--format", "json"])).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let eps = listed[0]["epsilon"].as_f64().unwrap_or_default();
    assert!((eps - 4.0 * (5f64 / 3.0).ln()).abs() < 1e-9, "{listed}");
    let understated = [&rappor[2..], &["--name", "app.w2", "--epsilon", "1"]].concat();
    let mut all = vec!["metric", "create"];
    all.extend_from_slice(&understated);
    let out = run(ldp(&server, &all)).await?;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("eps_1"), "{}", text(&out.stderr));
    let out = run(ldp(&server, &["estimate", "--metric", "app.words"])).await?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ldp rappor decode --metric app.words"),
        "{}",
        text(&out.stderr)
    );
    // New-user mistakes get errors that name the fix (before any work is done).
    let mut demo = ldp(
        &server,
        &["demo", "--report", "/nonexistent-ldp-dir/r.html"],
    );
    demo.env_remove("LDP_TOKEN");
    let out = run(demo).await?;
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let no_values = [
        "metric",
        "create",
        "--name",
        "app.c",
        "--mechanism",
        "oue",
        "--epsilon",
        "1",
    ];
    let out = run(ldp(&server, &no_values)).await?;
    assert!(
        text(&out.stderr).contains("give --categories"),
        "{}",
        text(&out.stderr)
    );
    let negative = [
        "metric",
        "create",
        "--name",
        "app.c",
        "--mechanism",
        "grr",
        "--epsilon",
        "-1",
    ];
    let out = run(ldp(
        &server,
        &[&negative[..], &["--domain-size", "4"]].concat(),
    ))
    .await?;
    assert!(
        text(&out.stderr).contains("invalid epsilon"),
        "{}",
        text(&out.stderr)
    );
    let mut no_scheme = ldp(&server, &["metric", "list"]);
    no_scheme.env("LDP_CONNECT", "localhost:50051");
    let out = run(no_scheme).await?;
    assert!(
        text(&out.stderr).contains("http://localhost:50051"),
        "{}",
        text(&out.stderr)
    );
    let candidates = dir.path().join("candidates.txt");
    std::fs::write(&candidates, "apple\nbanana\n")?;
    let mut decode = ldp(
        &server,
        &[
            "rappor",
            "decode",
            "--metric",
            "app.words",
            "--format",
            "json",
            "--candidates",
        ],
    );
    decode.arg(&candidates);
    let out = run(decode).await?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut table = ldp(
        &server,
        &["rappor", "decode", "--metric", "app.words", "--candidates"],
    );
    table.arg(&candidates);
    let out = run(table).await?;
    assert!(
        text(&out.stdout).contains("no reports"),
        "{}",
        text(&out.stdout)
    );
    let out = run(ldp(
        &server,
        &[
            "train",
            "--model",
            "nb",
            "--privacy",
            "local",
            "--delta",
            "2",
        ],
    ))
    .await?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--delta 2 must be in (0, 1)"),
        "{}",
        text(&out.stderr)
    );
    server.shutdown().await?;
    Ok(())
}

/// `ldp serve` with `args`, on an ephemeral port and a fresh database in `dir`
/// unless `args` say otherwise.
fn serve(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ldp"));
    command.args(["--log", "warn", "serve"]);
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    if !args.contains(&"--db") {
        command.arg("--db").arg(dir.join("other.db"));
    }
    command
        .args(args)
        .env("LDP_TOKEN", TOKEN)
        .stdin(Stdio::null());
    command
}

/// Regressions: a second `ldp serve` on the database of a running one started
/// and served a diverging copy of the metrics and closed epochs; limits of 0
/// started a server that refused every request; a missing TLS file was
/// reported without its name; a busy port was reported as "i/o: Address
/// already in use (os error 98): Address already in use (os error 98)".
#[test]
fn serve_refuses_bad_setups_with_one_clear_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("ldp.db");
    let db_arg = db.to_str().ok_or_else(|| anyhow::anyhow!("path"))?;
    let mut first = serve(dir.path(), &["--db", db_arg])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = first
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_default()
        .to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--db", db_arg],
            vec!["already served by another ldp process"],
        ),
        (
            vec!["--max-batch-reports", "0"],
            vec!["--max-batch-reports", "at least 1"],
        ),
        (
            vec!["--max-message-bytes", "0"],
            vec!["--max-message-bytes", "at least 1024"],
        ),
        (
            vec!["--max-group-batches", "0"],
            vec!["--max-group-batches"],
        ),
        (
            vec![
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            vec!["--tls-cert /nonexistent/cert.pem"],
        ),
        (
            vec!["--listen", &addr],
            vec![&addr, "Address already in use"],
        ),
    ];
    let results: Vec<_> = cases
        .iter()
        .map(|(args, _)| serve(dir.path(), args).output())
        .collect();
    first.kill()?;
    first.wait()?;
    for ((args, needles), out) in cases.iter().zip(results) {
        let out = out?;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        let first_line = stderr.lines().next().unwrap_or_default();
        assert!(first_line.starts_with("error: "), "{args:?}: {stderr}");
        for needle in needles {
            assert!(first_line.contains(needle), "{args:?}: {stderr}");
        }
        assert_eq!(
            first_line.matches("os error").count().min(1),
            first_line.matches("os error").count(),
            "{args:?} repeats its cause: {first_line}"
        );
    }
    Ok(())
}
