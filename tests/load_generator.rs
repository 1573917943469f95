//! The load generator (`src/bin/inventory-load.rs`) against a real server on
//! each backend and over each protocol: it runs, reports, and its own final
//! check of every product against the acknowledged changes passes.

mod common;

use common::{Backend, TestServer, backend_tests};

backend_tests!(the_load_generator_runs_and_its_check_passes);

/// Runs inventory-load against `server` over `protocol` with `args`, and
/// answers its JSON report; it must exit successfully.
async fn load_report(server: &TestServer, protocol: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_inventory-load"))
        .args([
            "--grpc",
            &server.grpc_url(""),
            "--http",
            &server.http_url(""),
        ])
        .args(["--protocol", protocol, "--json"])
        .args(args)
        .output()
        .await
        .expect("run inventory-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{protocol}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("a JSON report")
}

async fn the_load_generator_runs_and_its_check_passes(backend: Backend) {
    let server = TestServer::start(backend).await;
    for protocol in ["grpc", "rest", "connect"] {
        let report = load_report(
            &server,
            protocol,
            &[
                "--concurrency",
                "8",
                "--requests",
                "400",
                "--duration",
                "20s",
                "--products",
                "20",
                "--stock",
                "100",
                "--distribution",
                "zipf",
                "--quantity",
                "1-3",
                "--mix",
                "check=10,reserve=40,order=10,release=15,commit=15,update=10",
            ],
        )
        .await;
        assert_eq!(report["calls"], 400, "{protocol}: {report}");
        assert!(
            report["ok"].as_u64().unwrap_or(0) > 200,
            "{protocol}: {report}"
        );
        assert_eq!(report["verified"], 20, "{protocol}");
        assert_eq!(report["mismatches"], serde_json::json!([]), "{protocol}");
        assert!(report["latency_ms"]["p99"].as_f64().unwrap_or(0.0) > 0.0);
    }
}

/// Runs inventory-load for 1.5 s of reservations from 32 clients over `protocol`,
/// with `extra` flags, and answers how many calls were refused for load.
async fn refused_for_load(server: &TestServer, protocol: &str, extra: &[&str]) -> u64 {
    let mut args = vec![
        "--concurrency",
        "32",
        "--duration",
        "1500ms",
        "--products",
        "1",
        "--stock",
        "1000000",
        "--mix",
        "reserve=1",
        "--no-verify",
    ];
    args.extend_from_slice(extra);
    let report = load_report(server, protocol, &args).await;
    report["outcomes"]["reserve"]["RESOURCE_EXHAUSTED"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn with_backoff_a_refused_client_waits_what_retry_after_asks() {
    // One call at a time and no queue: 32 clients are refused often.
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.max_in_flight = 1;
        config.server.max_queued = 0;
    })
    .await;
    for protocol in ["grpc", "rest"] {
        let eager = refused_for_load(&server, protocol, &[]).await;
        let patient = refused_for_load(&server, protocol, &["--backoff"]).await;
        // Told `retry-after: 1`, each client waits 1-2 s after a refusal:
        // in 1.5 s it is refused at most twice.
        assert!(eager > 64, "{protocol}: {eager} refused without --backoff");
        assert!(
            (1..=64).contains(&patient),
            "{protocol}: {patient} refused with --backoff"
        );
    }
}
