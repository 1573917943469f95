//! Health: one database probe feeds both `grpc.health.v1.Health` (through a
//! background monitor) and `GET /health` on the HTTP port (live, per request).
//!
//! The service reports SERVING, overall (`""`) and for
//! `inventory.v1.InventoryService`, only while the database answers; it turns
//! NOT_SERVING when a ping fails or times out and back by itself when the
//! database returns, and NOT_SERVING for good once shutdown begins.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::domain::Inventory;
use crate::pb::INVENTORY_SERVICE_NAME;

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
        let error = match tokio::time::timeout(self.timeout, self.inventory.ping()).await {
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

/// Sets the grpc.health.v1 status, overall and for the inventory service.
pub async fn set_status(reporter: &HealthReporter, serving: bool) {
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
