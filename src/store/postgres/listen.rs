//! The feed of changes between replicas: every transaction that changes
//! stock sends one `NOTIFY` per row on [`CHANNEL`] when replicas keep a
//! memory cache, and one on [`super::events::CHANNEL`] when it added events
//! (see `work.rs`; PostgreSQL delivers them at commit, and drops them on
//! rollback). Each replica `LISTEN`s on a connection of its own, hands the
//! stock rows it hears to its cache and wakes its event hub
//! ([`EventSignal`]; the hub reads the outbox itself). The connection is checked every [`PING_INTERVAL`]; when it is
//! lost the cache is told ([`ChangeFeed::Down`]) and a new one is opened,
//! with a growing pause, until it is back ([`ChangeFeed::Up`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::domain::StockLevel;
use crate::domain::cache::{ChangeFeed, ChangeFollower};
use crate::domain::events::EventSignal;

/// The channel stock changes are announced on.
pub const CHANNEL: &str = "inventory_stock";

/// The listening connection's `application_name` (as `pg_stat_activity`
/// shows it).
pub const APPLICATION_NAME: &str = "inventory-service-listen";

/// How often the listening connection is checked.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Longest pause between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Most changes handed to the cache at once.
const MAX_CHANGES: usize = 512;

/// A stock row as announced (short keys: one notification per row).
#[derive(Serialize, Deserialize)]
struct Payload {
    p: String,
    t: i32,
    r: i32,
    v: i64,
    /// `updated_at`, microseconds since the epoch.
    u: i64,
    /// The low-stock threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<i32>,
}

/// The announcement of `stock`.
pub(super) fn payload(stock: &StockLevel) -> String {
    let payload = Payload {
        p: stock.product_id.clone(),
        t: stock.total_quantity,
        r: stock.reserved_quantity,
        v: stock.version,
        u: stock.updated_at.timestamp_micros(),
        h: stock.low_stock_threshold,
    };
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The stock row an announcement describes.
fn parse(payload: &str) -> Option<StockLevel> {
    let payload: Payload = serde_json::from_str(payload).ok()?;
    Some(StockLevel {
        product_id: payload.p,
        total_quantity: payload.t,
        reserved_quantity: payload.r,
        version: payload.v,
        low_stock_threshold: payload.h,
        updated_at: DateTime::<Utc>::from_timestamp_micros(payload.u)?,
    })
}

/// Listens for stock changes until dropped.
#[derive(Debug)]
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening on the database at `url`: telling `follower` (the
    /// memory cache, if any) of every stock change heard and of the feed
    /// going down and up, and `events` of every commit that added events
    /// (and of the feed coming back, when some may have been missed).
    pub fn start(
        url: String,
        follower: Option<Arc<dyn ChangeFollower>>,
        events: EventSignal,
    ) -> Self {
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listen(&url, follower.as_deref(), &events).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        tracing::warn!(error = %error, "listening for changes failed");
                    }
                }
                if let Some(follower) = &follower {
                    follower.follow(ChangeFeed::Down).await;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Self { task }
    }
}

/// Listens on one connection until it is lost: `Ok` when it was up.
async fn listen(
    url: &str,
    follower: Option<&dyn ChangeFollower>,
    events: &EventSignal,
) -> Result<(), tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(APPLICATION_NAME);
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let heard_now = if notification.channel() == CHANNEL {
                        Heard::Stock(notification.payload().to_owned())
                    } else {
                        Heard::Events
                    };
                    if heard.send(heard_now).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the stock change feed's connection failed");
                    return;
                }
            }
        }
    });
    let _driver = AbortOnDrop(driver);
    if follower.is_some() {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    }
    client
        .batch_execute(&format!("LISTEN {}", super::events::CHANNEL))
        .await?;
    if let Some(follower) = follower {
        follower.follow(ChangeFeed::Up).await;
    }
    // Events committed while nobody listened are in the outbox.
    events.poke();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            heard_now = hearing.recv() => {
                let Some(first) = heard_now else {
                    return Ok(());
                };
                let mut changes: Vec<StockLevel> = Vec::new();
                let mut more = Some(first);
                while let Some(heard_now) = more.take() {
                    match heard_now {
                        Heard::Stock(payload) => changes.extend(parse(&payload)),
                        Heard::Events => events.poke(),
                    }
                    if changes.len() < MAX_CHANGES {
                        more = hearing.try_recv().ok();
                    }
                }
                if let Some(follower) = follower
                    && !changes.is_empty()
                {
                    follower.follow(ChangeFeed::Changed(changes)).await;
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(PING_INTERVAL, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(_) => {
                        tracing::warn!("the stock change feed's connection does not answer");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A notification heard.
enum Heard {
    /// A stock row, as announced on [`CHANNEL`].
    Stock(String),
    /// Events were committed.
    Events,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_the_stock_it_announces() {
        let stock = StockLevel {
            product_id: "sku-1".into(),
            total_quantity: 10,
            reserved_quantity: 3,
            version: 4,
            low_stock_threshold: Some(3),
            updated_at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456)
                .expect("time"),
        };
        assert_eq!(parse(&payload(&stock)), Some(stock));
        assert_eq!(parse("not json"), None);
    }
}
