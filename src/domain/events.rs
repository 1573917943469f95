//! Live stock events: following the outbox of changes as it grows.
//!
//! Every change of stock leaves a [`super::model::StockEvent`] in the
//! store's ordered outbox, in the same transaction as the change
//! ([`super::port::Changes`]); the store hands out positions in commit
//! order, across every replica, so an event is readable only once every
//! event before it is (positions grow, and may skip a number where a
//! transaction failed at its commit). A watch is a
//! cursor over that outbox: it reads what it missed from the store, then
//! follows the [`EventHub`], which reads each new event from the store once
//! for every watcher of the process and broadcasts it. The hub is woken by
//! [`EventSignal`] (the store's own commits, and other replicas' commits
//! heard through the database), and reads on a timer as well, so a lost
//! wake-up delays an event by at most [`EventSettings::poll_interval`].
//!
//! A watcher that takes its events slower than they come falls behind the
//! hub's bounded buffer and is ended ([`Error::WatchTooSlow`]): writers never
//! wait for watchers, and memory does not grow with a slow one. It resumes
//! from the last position it received, and the outbox gives it the rest.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use super::error::{Error, Result};
use super::model::PositionedEvent;
use super::port::{InventoryStore, StoreError};

/// Events read from the store at once.
const PAGE: u32 = 256;

/// Where the latest committed event is, as far as this process knows: the
/// store tells it after its own commits, the database's notifications after
/// other replicas'. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSignal(Arc<watch::Sender<i64>>);

impl Default for EventSignal {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl EventSignal {
    /// A signal at position 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events up to `position` are committed.
    pub fn committed(&self, position: i64) {
        self.0.send_if_modified(|latest| {
            let newer = position > *latest;
            if newer {
                *latest = position;
            }
            newer
        });
    }

    /// Events may have been committed, up to an unknown position (a
    /// notification feed that was down is back).
    pub fn poke(&self) {
        self.0.send_modify(|_| {});
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.0.subscribe()
    }
}

/// How watches are served (`events.*` in the configuration).
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Whether the store keeps events: watches are refused when it does
    /// not ([`crate::domain::Error::EventsDisabled`]).
    pub enabled: bool,
    /// How often the hub reads the outbox when nothing woke it.
    pub poll_interval: Duration,
    /// How many events the hub keeps for watchers that are behind; a watcher
    /// further behind is ended.
    pub buffer: usize,
    /// How long events are kept in the outbox.
    pub retention: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval: Duration::from_secs(1),
            buffer: 4096,
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Reads each new event from the store once and broadcasts it to every
/// watch of the process. Stops when dropped.
pub struct EventHub {
    store: Arc<dyn InventoryStore>,
    sender: broadcast::Sender<Arc<Broadcast>>,
    /// Where the hub starts reading when it has no position: the earliest
    /// position a caught-up watch waits after.
    start: Arc<Mutex<Option<i64>>>,
    signal: EventSignal,
    /// Set once the service shuts down: every watch ends.
    closing: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// An event as the hub sends it: with the position the hub had reached
/// before it, so that a watch knows whether it missed anything between.
#[derive(Debug)]
struct Broadcast {
    /// Every event after this position and before `event` was sent before.
    since: i64,
    event: PositionedEvent,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("watchers", &self.sender.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventHub {
    /// Starts following the store's outbox from its latest event.
    pub fn start(
        store: Arc<dyn InventoryStore>,
        signal: &EventSignal,
        settings: &EventSettings,
    ) -> Self {
        let (sender, _) = broadcast::channel(settings.buffer.max(1));
        let start = Arc::new(Mutex::new(None));
        let task = tokio::spawn(follow(
            store.clone(),
            sender.clone(),
            start.clone(),
            signal.subscribe(),
            settings.poll_interval,
        ));
        Self {
            store,
            sender,
            start,
            signal: signal.clone(),
            closing: watch::Sender::new(false),
            task,
        }
    }

    /// Ends every watch, now and to come ([`Error::ShuttingDown`]), so that
    /// a graceful shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The changes of `products` (every product when empty) committed after
    /// position `after` (from now on when `None`), in commit order, until
    /// the stream is dropped or fails: [`Error::EventsPurged`] or
    /// [`Error::PositionAhead`] at once for a position the outbox cannot
    /// resume from, [`Error::WatchTooSlow`] for a watcher that fell too far
    /// behind, a store error when the outbox cannot be read.
    ///
    /// The first read of the outbox is made before the stream is returned,
    /// so a position it cannot resume from is refused at once.
    pub async fn watch(
        &self,
        products: BTreeSet<String>,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = Result<PositionedEvent>> + Send + 'static> {
        let mut watch = Watch {
            store: self.store.clone(),
            // Subscribed before the first read, so that nothing committed
            // between the read and the subscription is missed.
            live: self.sender.subscribe(),
            products,
            position: after,
            pending: std::collections::VecDeque::new(),
            caught_up: false,
            start: self.start.clone(),
            signal: self.signal.clone(),
            closing: self.closing.subscribe(),
        };
        watch.read().await?;
        Ok(futures_util::stream::unfold(
            Some(watch),
            |watch| async move {
                let mut watch = watch?;
                match watch.next().await {
                    Ok(event) => Some((Ok(event), Some(watch))),
                    Err(error) => Some((Err(error), None)),
                }
            },
        ))
    }
}

/// The hub's loop: on every wake-up or tick, read every event after the last
/// one broadcast, in pages.
async fn follow(
    store: Arc<dyn InventoryStore>,
    sender: broadcast::Sender<Arc<Broadcast>>,
    start: Arc<Mutex<Option<i64>>>,
    mut signal: watch::Receiver<i64>,
    poll_interval: Duration,
) {
    let mut position: Option<i64> = None;
    loop {
        // With nobody watching, nothing is read. A watch reads the past
        // from the store itself, and once caught up it tells the hub where
        // to start (see `Watch::wait_live`).
        if sender.receiver_count() == 0 {
            position = None;
            *lock(&start) = None;
        } else if position.is_none() {
            position = lock(&start).take();
        }
        while sender.receiver_count() > 0 {
            let Some(after) = position else {
                break;
            };
            let page = match store.events(after, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::debug!(%error, "reading the event outbox failed; trying again later");
                    break;
                }
            };
            let full = page.events.len() == PAGE as usize;
            for event in page.events {
                let since = position.replace(event.position).unwrap_or(after);
                // No watcher is not an error: the events stay in the outbox.
                let _ = sender.send(Arc::new(Broadcast { since, event }));
            }
            if !full {
                break;
            }
        }
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    // Nobody can signal any more: fall back to the timer.
                    tokio::time::sleep(poll_interval).await;
                }
            }
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One watcher's cursor.
struct Watch {
    store: Arc<dyn InventoryStore>,
    live: broadcast::Receiver<Arc<Broadcast>>,
    products: BTreeSet<String>,
    /// The position of the last event read (sent or filtered out); `None`
    /// before the first read of a watch from now on.
    position: Option<i64>,
    /// Events read from the store and not sent yet.
    pending: std::collections::VecDeque<PositionedEvent>,
    /// Whether the store had nothing more at the last read: then the watch
    /// follows the hub.
    caught_up: bool,
    /// The hub's start, when it has none.
    start: Arc<Mutex<Option<i64>>>,
    /// Wakes the hub.
    signal: EventSignal,
    /// True once the service shuts down.
    closing: watch::Receiver<bool>,
}

impl Watch {
    fn wanted(&self, event: &PositionedEvent) -> bool {
        self.products.is_empty() || self.products.contains(&event.event.stock.product_id)
    }

    /// The next event the watcher wants, or [`Error::ShuttingDown`].
    async fn next(&mut self) -> Result<PositionedEvent> {
        let mut closing = self.closing.clone();
        if *closing.borrow_and_update() {
            return Err(self.shutting_down());
        }
        tokio::select! {
            biased;
            _ = closing.changed() => Err(self.shutting_down()),
            next = self.next_event() => next,
        }
    }

    fn shutting_down(&self) -> Error {
        Error::ShuttingDown {
            position: self.position.unwrap_or_default(),
        }
    }

    /// The next event the watcher wants.
    async fn next_event(&mut self) -> Result<PositionedEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if self.wanted(&event) {
                    return Ok(event);
                }
                continue;
            }
            if !self.caught_up {
                self.read().await?;
                continue;
            }
            let last = self.position.unwrap_or_default();
            self.wait_live(last);
            match self.live.recv().await {
                Ok(sent) if sent.event.position <= last => {}
                Ok(sent) if sent.since <= last => {
                    self.position = Some(sent.event.position);
                    self.pending.push_back(sent.event.clone());
                }
                // The hub started after this watch's position (it had
                // nobody to send to before): read the stretch between from
                // the store.
                Ok(_) => self.caught_up = false,
                Err(broadcast::error::RecvError::Lagged(behind)) => {
                    return Err(Error::WatchTooSlow {
                        position: last,
                        behind,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Error::Store(StoreError::NotConnected(
                        "the service is shutting down".into(),
                    )));
                }
            }
        }
    }

    /// Before waiting for the hub: a hub without a position (nobody was
    /// watching) starts at the earliest position a watch waits after, and
    /// is woken to read from there at once.
    fn wait_live(&self, last: i64) {
        let mut start = lock(&self.start);
        if start.is_none_or(|earliest| last < earliest) {
            *start = Some(last);
            drop(start);
            self.signal.poke();
        }
    }

    /// Reads the next page of the outbox after the watch's position.
    async fn read(&mut self) -> Result<()> {
        let Some(after) = self.position else {
            let page = self.store.events(i64::MAX, 0).await?;
            self.position = Some(page.last_position);
            return Ok(());
        };
        let mut page = self.store.events(after, PAGE).await?;
        // 0: from the oldest event kept, whatever was forgotten before it.
        if after == 0 && page.purged_through > 0 {
            self.position = Some(page.purged_through);
            page = self.store.events(page.purged_through, PAGE).await?;
            if page.purged_through > self.position.unwrap_or_default() {
                // Purged again meanwhile: start over from the new oldest.
                self.position = Some(0);
                return Ok(());
            }
        }
        let after = self.position.unwrap_or(after);
        if after < page.purged_through {
            return Err(Error::EventsPurged {
                after,
                purged_through: page.purged_through,
            });
        }
        if after > page.last_position {
            return Err(Error::PositionAhead {
                after,
                last_position: page.last_position,
            });
        }
        self.caught_up = page.events.len() < PAGE as usize;
        if let Some(last) = page.events.last() {
            self.position = Some(last.position);
        }
        self.pending.extend(page.events);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Watches over the in-memory store: every kind of change, resumption,
    //! the bounds of the outbox and a watcher that falls behind.

    use std::time::Duration;

    use futures_util::StreamExt as _;

    use super::*;
    use crate::domain::memory::MemoryStore;
    use crate::domain::{ChangeKind, Inventory, InventorySettings, Parts};

    fn inventory(store: &Arc<MemoryStore>, buffer: usize) -> Inventory {
        Inventory::with_parts(
            store.clone(),
            InventorySettings {
                default_reservation_timeout: Duration::from_secs(300),
                max_reservation_timeout: Duration::from_secs(3600),
                record_checks: false,
                request_id_ttl: Duration::from_secs(3600),
                events: EventSettings {
                    enabled: true,
                    poll_interval: Duration::from_secs(3600),
                    buffer,
                    retention: Duration::from_secs(3600),
                },
                batch: None,
            },
            Parts {
                event_signal: Some(store.signal()),
                ..Parts::default()
            },
        )
    }

    /// The next `n` events of `stream`, each within a second.
    async fn take<S>(stream: &mut S, n: usize) -> Vec<PositionedEvent>
    where
        S: Stream<Item = Result<PositionedEvent>> + Unpin,
    {
        let mut events = Vec::new();
        for _ in 0..n {
            let next = tokio::time::timeout(Duration::from_secs(1), stream.next())
                .await
                .expect("an event within a second")
                .expect("the stream goes on")
                .expect("an event, not an error");
            events.push(next);
        }
        events
    }

    fn summary(events: &[PositionedEvent]) -> Vec<(ChangeKind, &str, i32, i32, i32)> {
        events
            .iter()
            .map(|e| {
                (
                    e.event.kind,
                    e.event.stock.product_id.as_str(),
                    e.event.quantity_change,
                    e.event.stock.total_quantity,
                    e.event.stock.reserved_quantity,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_kind_of_change_is_one_event_with_the_stock_after_it() {
        let store = Arc::new(MemoryStore::new());
        let inventory = inventory(&store, 64);
        let mut live = Box::pin(inventory.watch(&[], None).await.expect("watch"));
        inventory
            .update("p1", "set", 10, None, "")
            .await
            .expect("set");
        inventory.reserve("p1", "o1", 3, 0).await.expect("reserve");
        inventory.release("p1", "o1", 1, "").await.expect("release");
        inventory.commit("p1", "o1", 0, "").await.expect("commit");
        inventory.reserve("p1", "o2", 4, 1).await.expect("reserve");
        // Refusals change nothing and say nothing.
        inventory
            .reserve("p1", "o3", 100, 0)
            .await
            .expect_err("short");
        inventory
            .update("p1", "subtract", 100, None, "")
            .await
            .expect_err("below");
        let events = take(&mut live, 6).await;
        assert_eq!(
            summary(&events),
            [
                (ChangeKind::Update, "p1", 10, 10, 0),
                // Created with stock: its available stock rose from zero.
                (ChangeKind::BackInStock, "p1", 10, 10, 0),
                (ChangeKind::Reserve, "p1", -3, 10, 3),
                (ChangeKind::Release, "p1", 1, 10, 2),
                (ChangeKind::Commit, "p1", 0, 8, 0),
                (ChangeKind::Reserve, "p1", -4, 8, 4),
            ]
        );
        assert!(events.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(events[2].event.order_id.as_deref(), Some("o1"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            inventory.expire_due_reservations(10).await.expect("sweep"),
            1
        );
        let expired = take(&mut live, 1).await;
        assert_eq!(summary(&expired), [(ChangeKind::Expire, "p1", 4, 8, 0)]);
        assert_eq!(expired[0].event.order_id.as_deref(), Some("o2"));
    }

    #[tokio::test]
    async fn a_watch_resumes_after_any_position_and_filters_products() {
        let store = Arc::new(MemoryStore::new());
        let inventory = inventory(&store, 64);
        for n in 1..=6 {
            let product = if n % 2 == 0 { "even" } else { "odd" };
            inventory
                .update(product, "add", n, None, "")
                .await
                .expect("add");
        }
        // Six updates, and each product's creation brought it in stock.
        let all = take(
            &mut Box::pin(inventory.watch(&[], Some(0)).await.expect("watch")),
            8,
        )
        .await;
        for cut in 0..8 {
            let after = all[cut].position;
            let mut rest = Box::pin(inventory.watch(&[], Some(after)).await.expect("watch"));
            assert_eq!(take(&mut rest, 7 - cut).await, all[cut + 1..]);
        }
        let mut even = Box::pin(
            inventory
                .watch(&["even".to_owned()], Some(0))
                .await
                .expect("watch"),
        );
        let evens = take(&mut even, 4).await;
        assert!(evens.iter().all(|e| e.event.stock.product_id == "even"));
        // Live events after the catch-up, without a gap or a repeat.
        inventory
            .update("even", "add", 1, None, "")
            .await
            .expect("add");
        inventory
            .update("odd", "add", 1, None, "")
            .await
            .expect("add");
        inventory
            .update("even", "add", 1, None, "")
            .await
            .expect("add");
        let live = take(&mut even, 2).await;
        assert_eq!(
            summary(&live),
            [
                (ChangeKind::Update, "even", 1, 13, 0),
                (ChangeKind::Update, "even", 1, 14, 0)
            ]
        );
    }

    #[tokio::test]
    async fn positions_the_outbox_cannot_resume_from_are_refused_at_once() {
        let store = Arc::new(MemoryStore::new());
        let inventory = inventory(&store, 64);
        for _ in 0..4 {
            inventory
                .update("p1", "add", 1, None, "")
                .await
                .expect("add");
        }
        // Four updates, and the product's creation brought it in stock.
        match inventory.watch(&[], Some(6)).await.map(drop) {
            Err(Error::PositionAhead {
                after: 6,
                last_position: 5,
            }) => {}
            other => panic!("expected PositionAhead, got {other:?}"),
        }
        let later = chrono::Utc::now() + chrono::Duration::hours(2);
        assert_eq!(store.purge_events(later, 2).await.expect("purge"), 2);
        match inventory.watch(&[], Some(1)).await.map(drop) {
            Err(Error::EventsPurged {
                after: 1,
                purged_through: 2,
            }) => {}
            other => panic!("expected EventsPurged, got {other:?}"),
        }
        // At the purge mark, and from the oldest kept (0), nothing is lost.
        let from_mark = take(
            &mut Box::pin(inventory.watch(&[], Some(2)).await.expect("watch")),
            2,
        )
        .await;
        let from_oldest = take(
            &mut Box::pin(inventory.watch(&[], Some(0)).await.expect("watch")),
            2,
        )
        .await;
        assert_eq!(from_mark, from_oldest);
        assert_eq!(from_mark[0].position, 3);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_buffer_is_ended_and_resumes() {
        let store = Arc::new(MemoryStore::new());
        let inventory = inventory(&store, 4);
        let mut slow = Box::pin(inventory.watch(&[], None).await.expect("watch"));
        let mut first = None;
        for n in 0..40 {
            inventory
                .update(&format!("p{n:02}"), "set", 1, None, "")
                .await
                .expect("set");
            if n == 0 {
                first = Some(take(&mut slow, 1).await.remove(0));
            }
        }
        // Give the hub time to send the rest, then read: the watch fell
        // more than 4 events behind.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut received = vec![first.expect("first event")];
        let position = loop {
            match tokio::time::timeout(Duration::from_secs(1), slow.next()).await {
                Ok(Some(Ok(event))) => received.push(event),
                Ok(Some(Err(Error::WatchTooSlow { position, .. }))) => break position,
                other => panic!("expected the watch to end as too slow, got {other:?}"),
            }
        };
        assert_eq!(Some(position), received.last().map(|e| e.position));
        assert!(slow.next().await.is_none(), "the watch has ended");
        // Resuming from there gives every other event once.
        // (each product's creation is an update and its coming in stock)
        let missing = 80 - received.len();
        let rest = take(
            &mut Box::pin(inventory.watch(&[], Some(position)).await.expect("watch")),
            missing,
        )
        .await;
        let products: Vec<String> = received
            .iter()
            .chain(&rest)
            .map(|e| e.event.stock.product_id.clone())
            .collect();
        let expected: Vec<String> = (0..80).map(|n| format!("p{:02}", n / 2)).collect();
        assert_eq!(products, expected);
    }

    #[tokio::test]
    async fn crossing_the_threshold_or_zero_raises_stock_state_events() {
        use ChangeKind::{BackInStock, LowStock, OutOfStock, Release, Reserve, Update};
        let store = Arc::new(MemoryStore::new());
        let inventory = inventory(&store, 64);
        inventory
            .update("p1", "set", 10, None, "")
            .await
            .expect("set");
        let stock = inventory
            .set_low_stock_threshold("p1", Some(3))
            .await
            .expect("threshold");
        assert_eq!(stock.low_stock_threshold, Some(3));
        let mut live = Box::pin(inventory.watch(&[], None).await.expect("watch"));
        inventory
            .reserve("p1", "o1", 5, 0)
            .await
            .expect("above the threshold");
        inventory.reserve("p1", "o2", 3, 0).await.expect("to 2");
        inventory.reserve("p1", "o3", 2, 0).await.expect("to 0");
        inventory
            .release("p1", "o3", 0, "")
            .await
            .expect("back to 2");
        inventory
            .update("p1", "add", 10, None, "")
            .await
            .expect("to 12");
        inventory
            .update("p1", "subtract", 10, None, "")
            .await
            .expect("to 2");
        let kinds: Vec<ChangeKind> = take(&mut live, 10)
            .await
            .iter()
            .map(|e| e.event.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                Reserve,
                Reserve,
                LowStock,
                Reserve,
                OutOfStock,
                Release,
                BackInStock,
                Update,
                Update,
                LowStock
            ]
        );
        // Cleared: only zero counts.
        let cleared = inventory
            .set_low_stock_threshold("p1", None)
            .await
            .expect("clear");
        assert_eq!(cleared.low_stock_threshold, None);
        inventory
            .update("p1", "add", 5, None, "")
            .await
            .expect("to 7");
        inventory.reserve("p1", "o4", 7, 0).await.expect("to 0");
        let kinds: Vec<ChangeKind> = take(&mut live, 3)
            .await
            .iter()
            .map(|e| e.event.kind)
            .collect();
        assert_eq!(kinds, [Update, Reserve, OutOfStock]);
        match inventory.set_low_stock_threshold("nope", Some(1)).await {
            Err(Error::ProductNotFound { product_id }) => assert_eq!(product_id, "nope"),
            other => panic!("expected ProductNotFound, got {other:?}"),
        }
        assert_eq!(
            inventory
                .check("p1", 1)
                .await
                .expect("check")
                .stock
                .low_stock_threshold,
            None
        );
    }
}
