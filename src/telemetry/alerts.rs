//! Alerts on read-only mode: for every transition into and out of it, one
//! ERROR log line, the `inventory_read_only` gauge and the transitions
//! counter, and, when `alerting.webhook_url` is set, a JSON POST:
//!
//! ```json
//! {"service": "inventory-service", "replica": "host-1/1234",
//!  "state": "read_only", "reason": "database unavailable: ...",
//!  "since": "2026-11-29T07:00:00Z"}
//! ```
//!
//! (`state` is `read_only` or `normal`; `since` is when that state began.)
//! The POST runs in the background, tried up to `alerting.webhook_attempts`
//! times with a doubling pause: it never delays a request. Alerts are sent
//! in the order of the transitions, one at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::instrument::WithSubscriber as _;

use super::Metrics;
use crate::domain::availability::{AvailabilityObserver, Mode};

/// The body of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `server.name`.
    pub service: String,
    /// This replica: host name and process id.
    pub replica: String,
    /// `read_only` or `normal`.
    pub state: &'static str,
    /// Why it is read-only; for `normal`, why it was.
    pub reason: String,
    /// When this state began.
    pub since: DateTime<Utc>,
}

/// Where alerts are POSTed.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    /// How long one POST may take.
    pub timeout: Duration,
    /// Tries of one alert in all.
    pub attempts: u32,
}

/// Logs, counts and posts every transition of read-only mode.
pub struct ReadOnlyAlerts {
    service: String,
    replica: String,
    metrics: Arc<Metrics>,
    /// To the task that posts, when there is a webhook.
    outbox: Option<mpsc::UnboundedSender<Alert>>,
}

/// This replica's name in alerts: its host name and process id.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}

impl ReadOnlyAlerts {
    /// Alerts of `service`, counted in `metrics`, posted to `webhook` when
    /// given (the posting task runs on the current Tokio runtime until this
    /// is dropped).
    pub fn new(service: String, metrics: Arc<Metrics>, webhook: Option<Webhook>) -> Self {
        let outbox = webhook.map(|webhook| {
            let (outbox, inbox) = mpsc::unbounded_channel();
            tokio::spawn(post_alerts(webhook, inbox, metrics.clone()).with_current_subscriber());
            outbox
        });
        Self {
            service,
            replica: replica_name(),
            metrics,
            outbox,
        }
    }
}

impl AvailabilityObserver for ReadOnlyAlerts {
    fn changed(&self, from: &Mode, to: &Mode) {
        let alert = match (from, to) {
            (_, Mode::ReadOnly { since, reason }) => {
                tracing::error!(
                    alert = "read_only",
                    reason = %reason,
                    "database unreachable: read-only mode (reads from the cache, writes refused)"
                );
                Alert {
                    service: self.service.clone(),
                    replica: self.replica.clone(),
                    state: "read_only",
                    reason: reason.clone(),
                    since: *since,
                }
            }
            (Mode::ReadOnly { since, reason }, Mode::Normal) => {
                let now = Utc::now();
                let lasted = (now - *since).to_std().unwrap_or_default();
                tracing::error!(
                    alert = "normal",
                    read_only_seconds = lasted.as_secs_f64(),
                    "database reachable again: read-only mode over"
                );
                Alert {
                    service: self.service.clone(),
                    replica: self.replica.clone(),
                    state: "normal",
                    reason: reason.clone(),
                    since: now,
                }
            }
            (Mode::Normal, Mode::Normal) => return,
        };
        self.metrics.read_only_changed(alert.state == "read_only");
        if let Some(outbox) = &self.outbox
            && outbox.send(alert).is_err()
        {
            tracing::warn!("the alert webhook task has stopped; alert not sent");
        }
    }
}

/// Posts each alert in turn, with retries, until the sender is dropped.
async fn post_alerts(
    webhook: Webhook,
    mut inbox: mpsc::UnboundedReceiver<Alert>,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder().timeout(webhook.timeout).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the alert webhook client; alerts are only logged");
            return;
        }
    };
    while let Some(alert) = inbox.recv().await {
        let mut pause = Duration::from_millis(200);
        let mut delivered = false;
        for attempt in 1..=webhook.attempts {
            match client.post(&webhook.url).json(&alert).send().await {
                Ok(response) if response.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(response) => tracing::warn!(
                    attempt,
                    status = response.status().as_u16(),
                    "the alert webhook refused an alert"
                ),
                Err(error) => tracing::warn!(attempt, %error, "posting an alert failed"),
            }
            if attempt < webhook.attempts {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
        metrics.alert_delivery(delivered);
        if !delivered {
            tracing::error!(
                state = alert.state,
                attempts = webhook.attempts,
                "an alert could not be delivered to the webhook"
            );
        }
    }
}
