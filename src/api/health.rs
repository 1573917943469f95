//! Health: one database probe feeds both `grpc.health.v1.Health` (through a
//! background monitor) and `GET /health` on the HTTP port (live, per request).
//!
//! Three states, chosen so that a load balancer keeps a replica in rotation
//! for as long as it can answer anything, while an operator sees the rest:
//!
//! | state | when | `/health` | `""` and `inventory.v1.InventoryService` | [`WRITES_SERVICE_NAME`] |
//! |---|---|---|---|---|
//! | `SERVING` | the database answers | 200 | SERVING | SERVING |
//! | `DEGRADED` | read-only mode with a cache: reads answered (marked stale), writes refused | 200, with `degraded` saying why and since when | SERVING | NOT_SERVING |
//! | `NOT_SERVING` | the database does not answer and there is no cache, or shutdown began | 503 | NOT_SERVING | NOT_SERVING |
//!
//! The monitor probes every `database.health_check_interval`, every
//! [`RECOVERY_PROBE_INTERVAL`] while the database is down (so the service
//! is back soon after it is), and at once when a request failed
//! transiently.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::domain::Inventory;
use crate::domain::availability::Mode;
use crate::pb::INVENTORY_SERVICE_NAME;

/// The grpc.health.v1 name whose status says whether writes are accepted.
pub const WRITES_SERVICE_NAME: &str = "inventory.v1.InventoryService.writes";

/// How often the database is probed while it does not answer.
pub const RECOVERY_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What a health probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `SERVING`, `DEGRADED` or `NOT_SERVING`.
    pub status: &'static str,
    /// The service's name.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// The database's state.
    pub database: DatabaseReport,
    /// Why the service is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<DegradedReport>,
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

/// The degradation part of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DegradedReport {
    /// `read_only`: reads come from the cache, marked stale; writes are
    /// refused.
    pub mode: &'static str,
    /// The database failure that started it.
    pub reason: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

impl HealthReport {
    /// Whether the replica answers requests (in rotation): `SERVING` or
    /// `DEGRADED`.
    pub fn is_serving(&self) -> bool {
        self.status != "NOT_SERVING"
    }

    /// Whether writes are accepted.
    pub fn accepts_writes(&self) -> bool {
        self.status == "SERVING"
    }
}

/// Pings the database with a deadline.
#[derive(Clone)]
pub struct HealthProbe {
    /// The use cases, whose store is pinged.
    inventory: Inventory,
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
    /// A probe of the database behind `inventory` (a `driver` database)
    /// that waits at most `timeout`.
    pub fn new(
        inventory: Inventory,
        timeout: Duration,
        service: String,
        version: String,
        driver: &'static str,
    ) -> Self {
        Self {
            inventory,
            timeout,
            service,
            version,
            driver,
        }
    }

    /// Pings the database now.
    pub async fn report(&self) -> HealthReport {
        let error = self.inventory.ping(self.timeout).await.err();
        let degraded = match (&error, self.inventory.mode()) {
            (Some(_), Mode::ReadOnly { since, reason }) if self.inventory.has_cache() => {
                Some(DegradedReport {
                    mode: "read_only",
                    reason,
                    since,
                })
            }
            _ => None,
        };
        let status = match (&error, &degraded) {
            (None, _) => "SERVING",
            (Some(_), Some(_)) => "DEGRADED",
            (Some(_), None) => "NOT_SERVING",
        };
        HealthReport {
            status,
            service: self.service.clone(),
            version: self.version.clone(),
            database: DatabaseReport {
                driver: self.driver,
                status: if error.is_none() { "up" } else { "down" },
                error: error.map(|e| e.to_string()),
            },
            degraded,
        }
    }

    /// Completes when a request failed transiently: time to probe.
    async fn suspected(&self) {
        self.inventory.suspected().await;
    }
}

/// Keeps the grpc.health.v1 statuses in step with the database until
/// `shutdown`, probing every `interval` (see the module's documentation).
pub async fn run_health_monitor(
    probe: HealthProbe,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last: Option<&'static str> = None;
    loop {
        let report = probe.report().await;
        if last != Some(report.status) {
            match report.status {
                "SERVING" => tracing::info!("database reachable; health is SERVING"),
                status => tracing::warn!(
                    error = report.database.error.as_deref().unwrap_or_default(),
                    "database unreachable; health is {status}"
                ),
            }
            set_status(&reporter, &report).await;
            last = Some(report.status);
        }
        let wait = if report.accepts_writes() {
            interval
        } else {
            interval.min(RECOVERY_PROBE_INTERVAL)
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
            () = probe.suspected() => {}
        }
    }
    set_not_serving(&reporter).await;
}

/// Sets the grpc.health.v1 statuses from `report`: overall and for the
/// inventory service, and for writes.
pub async fn set_status(reporter: &HealthReporter, report: &HealthReport) {
    let status = |up: bool| {
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    let serving = status(report.is_serving());
    reporter.set_service_status("", serving).await;
    reporter
        .set_service_status(INVENTORY_SERVICE_NAME, serving)
        .await;
    reporter
        .set_service_status(WRITES_SERVICE_NAME, status(report.accepts_writes()))
        .await;
}

/// Sets every grpc.health.v1 status to NOT_SERVING (shutdown).
pub async fn set_not_serving(reporter: &HealthReporter) {
    for name in ["", INVENTORY_SERVICE_NAME, WRITES_SERVICE_NAME] {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::server::HealthService;

    use std::sync::Arc;

    use super::*;
    use crate::domain::InventorySettings;
    use crate::domain::memory::MemoryStore;

    fn probe(store: Arc<MemoryStore>) -> HealthProbe {
        let settings = InventorySettings {
            default_reservation_timeout: Duration::from_secs(300),
            max_reservation_timeout: Duration::from_secs(3600),
            record_checks: false,
            request_id_ttl: Duration::from_secs(3600),
            events: crate::domain::events::EventSettings::default(),
            batch: None,
        };
        HealthProbe::new(
            Inventory::new(store, settings),
            Duration::from_secs(1),
            "inventory-service".into(),
            "test".into(),
            "sqlite",
        )
    }

    #[tokio::test]
    async fn the_report_follows_the_database() {
        let store = Arc::new(MemoryStore::new());
        let probe = probe(store.clone());
        let up = probe.report().await;
        assert!(up.is_serving());
        assert_eq!(up.status, "SERVING");
        store.set_down(true);
        let down = probe.report().await;
        assert!(!down.is_serving());
        assert_eq!(down.status, "NOT_SERVING");
        assert_eq!(down.database.status, "down");
        assert!(
            down.database
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("refused")
        );
    }

    #[tokio::test]
    async fn grpc_health_is_not_serving_while_the_database_is_down_and_recovers() {
        let store = Arc::new(MemoryStore::new());
        let (reporter, _) = tonic_health::server::health_reporter();
        let service = HealthService::from_health_reporter(reporter.clone());
        let stop = CancellationToken::new();
        let monitor = tokio::spawn(run_health_monitor(
            probe(store.clone()),
            reporter,
            Duration::from_millis(20),
            stop.clone(),
        ));
        let status_of = |name: &'static str| {
            let request = tonic::Request::new(HealthCheckRequest {
                service: name.into(),
            });
            let service = &service;
            async move {
                service
                    .check(request)
                    .await
                    .map(|r| r.into_inner().status())
                    .ok()
            }
        };
        let wait_for = |wanted: tonic_health::pb::health_check_response::ServingStatus| async move {
            for _ in 0..100 {
                let both = (status_of("").await, status_of(INVENTORY_SERVICE_NAME).await);
                if both == (Some(wanted), Some(wanted)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("health never became {wanted:?}");
        };
        use tonic_health::pb::health_check_response::ServingStatus as Wire;
        wait_for(Wire::Serving).await;
        store.set_down(true);
        wait_for(Wire::NotServing).await;
        store.set_down(false);
        wait_for(Wire::Serving).await;
        stop.cancel();
        monitor.await.expect("monitor stops");
        wait_for(Wire::NotServing).await;
    }
}
