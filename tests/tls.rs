//! TLS on both ports with a certificate made in the test (rcgen): REST and
//! gRPC over TLS, no clear text on a TLS port, and a renewed certificate
//! served to new connections without a restart (a broken one is not).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, TestDatabase, test_config};
use inventory_service::server::{self, Listeners};
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    (made.cert.pem(), made.signing_key.serialize_pem())
}

/// A client that trusts `cert_pem` only, reaching `localhost` at `addr`.
fn client_trusting(cert_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .tls_built_in_root_certs(false)
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn healthy_over_tls(cert_pem: &str, addr: SocketAddr) -> bool {
    let url = format!("https://localhost:{}/health", addr.port());
    client_trusting(cert_pem, addr)
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn both_ports_speak_tls_and_a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_a, key_a) = certificate();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, &cert_a).expect("write cert");
    std::fs::write(&key_path, &key_a).expect("write key");

    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = test_config(&database);
    config.server.tls_cert_file = cert_path.display().to_string();
    config.server.tls_key_file = key_path.display().to_string();
    config.server.tls_reload_interval = Duration::from_millis(100);
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (grpc_addr, http_addr) = (
        grpc.local_addr().expect("addr"),
        http.local_addr().expect("addr"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        config,
        Listeners { grpc, http },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut up = false;
    for _ in 0..100 {
        if healthy_over_tls(&cert_a, http_addr).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the service did not answer over TLS");

    // REST and gRPC (HTTP/2 by ALPN) on both ports.
    for addr in [http_addr, grpc_addr] {
        let client = client_trusting(&cert_a, addr);
        let response = client
            .get(format!(
                "https://localhost:{}/api/v1/inventory",
                addr.port()
            ))
            .send()
            .await
            .expect("REST over TLS");
        assert_eq!(response.status(), 200);
        let response = client
            .post(format!(
                "https://localhost:{}/inventory.v1.InventoryService/ListInventory",
                addr.port()
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .expect("gRPC over TLS");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .get("grpc-status")
                .is_none_or(|s| s == "0")
        );

        // No clear text on a TLS port.
        let plain = reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(
            plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
            "clear text answered on {addr}"
        );
    }

    // A renewed certificate is served to new connections.
    let (cert_b, key_b) = certificate();
    std::fs::write(&key_path, &key_b).expect("write key");
    std::fs::write(&cert_path, &cert_b).expect("write cert");
    let mut renewed = false;
    for _ in 0..100 {
        if healthy_over_tls(&cert_b, http_addr).await {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(renewed, "the renewed certificate was not served");
    assert!(
        !healthy_over_tls(&cert_a, http_addr).await,
        "the old certificate is still served"
    );

    // A broken one is refused and the current one stays.
    std::fs::write(&cert_path, "not a certificate").expect("write");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(healthy_over_tls(&cert_b, grpc_addr).await);

    let _ = stop.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("task");
    assert!(ended.is_ok(), "{ended:?}");
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, &cert).expect("write cert");
    std::fs::write(&key_path, &other_key).expect("write key");
    let database = TestDatabase::create(Backend::Sqlite).await;
    for (cert_file, key_file, expected) in [
        (
            dir.path().join("missing.crt"),
            key_path.clone(),
            "missing.crt",
        ),
        (cert_path.clone(), key_path.clone(), "tls.key"),
    ] {
        let mut config = test_config(&database);
        config.server.tls_cert_file = cert_file.display().to_string();
        config.server.tls_key_file = key_file.display().to_string();
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            http: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let error = server::serve(config, listeners, std::future::pending())
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
