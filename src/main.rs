//! The inventory-service binary: parse flags, load the configuration, start
//! logging, tracing and metrics, bind, and hand over to [`inventory_service::server::serve`] until
//! SIGTERM or Ctrl-C.
//!
//! ```text
//! inventory-service [--config PATH]   run the service
//! inventory-service --healthcheck     exit 0 if GET /health on the HTTP port says SERVING
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use inventory_service::config::Config;
use inventory_service::server::{self, Listeners};
use inventory_service::telemetry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const USAGE: &str = "\
usage: inventory-service [--config PATH] [--healthcheck]

  --config PATH   configuration file (default: config/config.yaml if present)
  --healthcheck   ask the running service's GET /health; exit 0 when SERVING
  --version       print the version
  --help          print this help

Environment variables INVENTORY_<SECTION>__<KEY> override the file,
e.g. INVENTORY_SERVER__HTTP_PORT=8080. RUST_LOG overrides logging.level.";

struct Args {
    config: Option<PathBuf>,
    healthcheck: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        healthcheck: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let path = iter.next().ok_or("--config needs a path")?;
                args.config = Some(path.into());
            }
            s if s.starts_with("--config=") => {
                args.config = Some(s.trim_start_matches("--config=").into());
            }
            "--healthcheck" => args.healthcheck = true,
            "--version" | "-V" => {
                println!("inventory-service {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("inventory-service: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("inventory-service: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.healthcheck {
        return runtime.block_on(healthcheck(config.server.http_port));
    }
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let telemetry = match telemetry::Telemetry::new(&config, telemetry::LogOutput::Stdout)
        .and_then(|t| t.install_global().map(|()| t))
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("inventory-service: cannot start logging and tracing: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match Listeners::bind(&config).await {
        Ok(listeners) => listeners,
        Err(error) => {
            tracing::error!(%error, "cannot bind the listening ports");
            return ExitCode::FAILURE;
        }
    };
    match server::serve_with_telemetry(config, listeners, shutdown_signal(), telemetry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "inventory-service failed");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The container HEALTHCHECK: a plain HTTP/1.1 `GET /health` on loopback, so
/// the runtime image needs no curl.
async fn healthcheck(http_port: u16) -> ExitCode {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", http_port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(response)) if response.starts_with(b"HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(Ok(response)) => {
            let head = String::from_utf8_lossy(&response);
            eprintln!("unhealthy: {}", head.lines().next().unwrap_or_default());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: no answer within 5s");
            ExitCode::FAILURE
        }
    }
}
