//! Health: one database probe feeds both `grpc.health.v1.Health` (through a
//! background monitor) and `GET /health` on the HTTP port (live, per request).
//!
//! The service reports SERVING, overall (`""`) and for
//! `inventory.v1.InventoryService`, only while the database answers; it turns
//! NOT_SERVING when a ping fails or times out and back by itself when the
//! database returns, and NOT_SERVING for good once shutdown begins.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::pb::INVENTORY_SERVICE_NAME;
use crate::store::InventoryStore;

/// What a health probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `SERVING` or `NOT_SERVING`, as grpc.health.v1 says it.
    pub status: &'static str,
    /// The service's name.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// The database's state.
    pub database: DatabaseReport,
}

/// The database part of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseReport {
    /// `sqlite` or `postgres`.
    pub driver: &'static str,
    /// `up` or `down`.
    pub status: &'static str,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HealthReport {
    /// Whether the service can serve requests.
    pub fn is_serving(&self) -> bool {
        self.database.status == "up"
    }
}

/// Pings the database with a deadline.
#[derive(Clone)]
pub struct HealthProbe {
    /// The database to ping.
    store: Arc<dyn InventoryStore>,
    /// Longest a ping may take before the database counts as down.
    timeout: Duration,
    /// Name reported in [`HealthReport::service`].
    service: String,
    /// Version reported in [`HealthReport::version`].
    version: String,
    /// Backend name reported in [`DatabaseReport::driver`].
    driver: &'static str,
}

impl HealthProbe {
    /// A probe of `store` (a `driver` database) that waits at most `timeout`.
    pub fn new(
        store: Arc<dyn InventoryStore>,
        timeout: Duration,
        service: String,
        version: String,
        driver: &'static str,
    ) -> Self {
        Self {
            store,
            timeout,
            service,
            version,
            driver,
        }
    }

    /// Pings the database now.
    pub async fn report(&self) -> HealthReport {
        let error = match tokio::time::timeout(self.timeout, self.store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let up = error.is_none();
        HealthReport {
            status: if up { "SERVING" } else { "NOT_SERVING" },
            service: self.service.clone(),
            version: self.version.clone(),
            database: DatabaseReport {
                driver: self.driver,
                status: if up { "up" } else { "down" },
                error,
            },
        }
    }
}

/// Keeps the grpc.health.v1 statuses in step with the database until
/// `shutdown`, probing every `interval`.
pub async fn run_health_monitor(
    probe: HealthProbe,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last: Option<bool> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let report = probe.report().await;
        let serving = report.is_serving();
        if last != Some(serving) {
            if serving {
                tracing::info!("database reachable; health is SERVING");
            } else {
                tracing::warn!(
                    error = report.database.error.as_deref().unwrap_or_default(),
                    "database unreachable; health is NOT_SERVING"
                );
            }
            set_status(&reporter, serving).await;
            last = Some(serving);
        }
    }
    set_status(&reporter, false).await;
}

async fn set_status(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(INVENTORY_SERVICE_NAME, status)
        .await;
}
