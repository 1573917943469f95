//! [`Inventory`]: the use cases the API exposes, one method each. Each
//! validates its request, builds the command the decisions of
//! [`super::decide`] run on, has the store apply it in one transaction, and
//! turns the outcome into a result or an [`Error`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde_json::json;
use tracing::Instrument as _;

use super::availability::{Availability, AvailabilityObserver, Mode};
use super::batch::{BatchObserver, BatchSettings, Batcher, apply_racing};
use super::cache::{CachedStock, StockCache};
use super::decide::check_entry;
use super::error::{Error, Result};
use super::events::{EventHub, EventSettings, EventSignal};
use super::model::{
    Alternative, HistoryCursor, HistoryEntry, Money, PositionedEvent, Reservation, StockLevel,
    StockTotals, new_id,
};
use super::port::{InventoryStore, StoreError, StoreResult};
use super::rules;
use super::work::{
    AlternativesOutcome, AlternativesUpdate, Command, CommitOutcome, CommitRequest, Keyed,
    NewOrderReservation, NewReservation, OrderItem, OrderRelease, Outcome, ReleaseOrderOutcome,
    ReleaseOutcome, ReleaseRequest, RequestKey, ReserveOrderOutcome, ReserveOutcome, StockUpdate,
    ThresholdUpdate, UpdateOutcome, Work,
};

/// The inventory settings the rules depend on (the `inventory` config section).
#[derive(Debug, Clone)]
pub struct InventorySettings {
    /// Timeout of a reservation whose request gives none.
    pub default_reservation_timeout: Duration,
    /// Longest timeout a request may ask for.
    pub max_reservation_timeout: Duration,
    /// Whether checks are written to the history (off: a read costs no write).
    pub record_checks: bool,
    /// How long the first result of a request made with a `request_id` is
    /// kept for its retries.
    pub request_id_ttl: Duration,
    /// Group commit: how changes of stock that arrive together are batched
    /// into one transaction; `None` applies each in its own.
    pub batch: Option<BatchSettings>,
    /// How live stock events are kept and served.
    pub events: EventSettings,
}

/// Where the use cases read the time: the system clock, or a test's.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The inventory use cases over a store.
#[derive(Clone)]
pub struct Inventory {
    /// Where stock, reservations and history live.
    store: Arc<dyn InventoryStore>,
    /// Limits and switches from the configuration.
    settings: InventorySettings,
    /// The time of each request.
    clock: Arc<dyn Clock>,
    /// Gathers changes of stock into batches, when group commit is on.
    batcher: Option<Batcher>,
    /// The stock cache, when there is one.
    cache: Option<Arc<dyn StockCache>>,
    /// Whether the database answers (read-only mode).
    availability: Arc<Availability>,
    /// Follows the outbox of stock events for every watch.
    events: Arc<EventHub>,
}

/// What the use cases are built with besides their store and settings; each
/// part may be left out.
#[derive(Default)]
pub struct Parts {
    /// Where the time comes from (the system clock when left out).
    pub clock: Option<Arc<dyn Clock>>,
    /// Told of every batch applied.
    pub batch_observer: Option<Arc<dyn BatchObserver>>,
    /// The stock cache.
    pub cache: Option<Arc<dyn StockCache>>,
    /// Told of every transition into and out of read-only mode.
    pub availability_observer: Option<Arc<dyn AvailabilityObserver>>,
    /// Wakes the event hub when events are committed (without it, the hub
    /// reads the outbox on its timer only).
    pub event_signal: Option<EventSignal>,
}

/// The answer to a check.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The product's stock.
    pub stock: StockLevel,
    /// The quantity asked about (1 when the request gave none).
    pub required_quantity: i32,
    /// Whether that much is available.
    pub available: bool,
    /// How old the figures are, when they come from the cache while the
    /// database cannot be reached; `None`: current.
    pub stale: Option<Duration>,
}

/// The answer to a reservation request.
#[derive(Debug, Clone)]
pub struct ReservationResult {
    /// The reservation made, or found again for a retry.
    pub reservation: Reservation,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// False when the request was a retry answered with the first reservation.
    pub created: bool,
}

/// The answer to a release.
#[derive(Debug, Clone)]
pub struct ReleaseResult {
    /// The reservation afterwards.
    pub reservation: Reservation,
    /// How much this call gave back (0 if the reservation was not active).
    pub released: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// True when this is the kept result of an earlier request with the same
    /// `request_id`: nothing was done now.
    pub replayed: bool,
}

/// The answer to a commit.
#[derive(Debug, Clone)]
pub struct CommitResult {
    /// The reservation afterwards.
    pub reservation: Reservation,
    /// How much this call committed (0 if the reservation was already committed).
    pub committed: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// True when this is the kept result of an earlier request with the same
    /// `request_id`: nothing was done now.
    pub replayed: bool,
}

/// One product given back by [`Inventory::release_order`].
#[derive(Debug, Clone)]
pub struct OrderReleaseItem {
    /// The reservation afterwards.
    pub reservation: Reservation,
    /// How much was given back.
    pub released: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
}

/// The answer to [`Inventory::release_order`].
#[derive(Debug, Clone)]
pub struct OrderReleaseResult {
    /// The order asked for.
    pub order_id: String,
    /// What was given back, by product id.
    pub items: Vec<OrderReleaseItem>,
    /// True when this is the kept result of an earlier request with the same
    /// `request_id`: nothing was done now.
    pub replayed: bool,
}

/// The answer to [`Inventory::reserve_order`]: one reservation per product,
/// by product id.
#[derive(Debug, Clone)]
pub struct OrderReservationResult {
    /// The order asked for.
    pub order_id: String,
    /// The reservations, new or found again for a retry.
    pub items: Vec<ReservationResult>,
}

/// One page of the products' stock.
#[derive(Debug, Clone)]
pub struct StockPage {
    /// The products' stock, by product id.
    pub items: Vec<StockLevel>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// The age of the oldest figure, when the page comes from the cache
    /// while the database cannot be reached (and may then miss products);
    /// `None`: current.
    pub stale: Option<Duration>,
}

/// The answer to a stock update.
#[derive(Debug, Clone)]
pub struct UpdateResult {
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// What the update did.
    pub plan: rules::UpdatePlan,
    /// True when this is the kept result of an earlier request with the same
    /// `request_id`: nothing was done now.
    pub replayed: bool,
}

/// One page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The entries, newest first.
    pub entries: Vec<HistoryEntry>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The store's key for a request made with `request_id` (empty: none), over
/// the request's `fields`.
fn request_key(
    request_id: &str,
    method: &'static str,
    fields: serde_json::Value,
) -> Result<Option<RequestKey>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let request_id = rules::canonical_id("request_id", request_id)?;
    let request_id = request_id.as_ref();
    Ok(Some(RequestKey {
        request_id: request_id.to_owned(),
        method,
        fields,
    }))
}

/// A keyed write's outcome and whether it was replayed; a key reused for
/// another request is refused, naming each field that differs.
fn unkeyed<T>(keyed: Keyed<T>, key: Option<&RequestKey>) -> Result<(T, bool)> {
    match keyed {
        Keyed::Fresh(outcome) => Ok((outcome, false)),
        Keyed::Replayed(outcome) => Ok((outcome, true)),
        Keyed::Reused { method, fields } => {
            let (request_id, now_method, now_fields) = key.map_or_else(
                || (String::new(), "", serde_json::Value::Null),
                |k| (k.request_id.clone(), k.method, k.fields.clone()),
            );
            let (differences, fields) =
                rules::differences(&method, &fields, now_method, &now_fields);
            Err(Error::RequestIdReused {
                request_id,
                differences,
                fields,
            })
        }
    }
}

/// An outcome of another command than the one run: a bug.
fn mismatched(command: &'static str) -> Error {
    Error::Store(StoreError::Internal(format!(
        "the {command} command was answered with another command's outcome"
    )))
}

/// A reservation's lifetime.
fn lifetime(timeout: Duration) -> Result<chrono::Duration> {
    chrono::Duration::from_std(timeout)
        .map_err(|_| Error::invalid("reservation_timeout", "duration.range", "is too large"))
}

impl Inventory {
    /// The use cases over `store` with `settings`, on the system clock,
    /// without a cache. With `settings.batch`, starts the batch writers (on
    /// the current Tokio runtime).
    pub fn new(store: Arc<dyn InventoryStore>, settings: InventorySettings) -> Self {
        Self::with_parts(store, settings, Parts::default())
    }

    /// The use cases over `store` with `settings` and `parts`.
    pub fn with_parts(
        store: Arc<dyn InventoryStore>,
        settings: InventorySettings,
        parts: Parts,
    ) -> Self {
        let clock = parts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let batcher = settings.batch.map(|batch| {
            Batcher::start(
                store.clone(),
                batch,
                parts.batch_observer,
                clock.clone(),
                parts.cache.clone(),
            )
        });
        let events = Arc::new(EventHub::start(
            store.clone(),
            &parts.event_signal.unwrap_or_default(),
            &settings.events,
        ));
        Self {
            store,
            settings,
            clock,
            batcher,
            cache: parts.cache,
            availability: Arc::new(Availability::new(parts.availability_observer)),
            events,
        }
    }

    /// Whether the service is read-only, and since when.
    pub fn mode(&self) -> Mode {
        self.availability.mode()
    }

    /// Whether reads can be answered from a cache while the database cannot
    /// be reached.
    pub fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// The current time at the precision both databases keep
    /// (microseconds), so a value written and read back compares equal.
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(6)
    }

    /// Succeeds when the database answers within `timeout` (for health
    /// checks). A success ends read-only mode, a failure to reach the
    /// database starts it.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let outcome = match tokio::time::timeout(timeout, self.store.ping()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::NotConnected(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        };
        self.availability.observe_ping(&outcome, self.now());
        Ok(outcome?)
    }

    /// Completes when a request failed transiently: time to ping.
    pub async fn suspected(&self) {
        self.availability.suspected().await;
    }

    /// A database call: refused at once in read-only mode, and its outcome
    /// noted (a transient failure makes the service read-only, a success
    /// normal again).
    async fn db<T>(&self, call: impl std::future::Future<Output = StoreResult<T>>) -> Result<T> {
        if let Mode::ReadOnly { since, reason } = self.availability.mode() {
            return Err(Error::ReadOnly { since, reason });
        }
        let outcome = call.await;
        self.availability.observe(&outcome);
        Ok(outcome?)
    }

    /// Applies one command: in the next batch of its lane with group commit
    /// on, else in a unit of work of its own (again after a race lost to a
    /// concurrent write, see [`super::batch::RACE_ATTEMPTS`]). The stock it
    /// changed is in the cache when it returns.
    async fn run(&self, command: Command) -> Result<Outcome> {
        match &self.batcher {
            Some(batcher) => self.db(batcher.submit(command)).await,
            None => self.run_alone(command).await,
        }
    }

    /// Applies one command in a unit of work of its own.
    async fn run_alone(&self, command: Command) -> Result<Outcome> {
        let name = command.name();
        let mut work = Work::single(command, self.now());
        // Dropped with this call if its caller gives up: the store then
        // rolls the work back rather than commit it.
        let alive = Arc::new(());
        work.callers.push(Arc::downgrade(&alive));
        let mut planned = self
            .db(apply_racing(
                self.store.as_ref(),
                &work,
                self.cache.as_deref(),
            ))
            .await?;
        drop(alive);
        planned.outcomes.pop().ok_or_else(|| mismatched(name))
    }

    /// A product's stock from the cache, traced as `cache.get` (a hit is a
    /// current figure).
    async fn cached(&self, product_id: &str) -> Option<CachedStock> {
        let cache = self.cache.as_ref()?;
        let span = tracing::info_span!("cache.get", cache.hit = tracing::field::Empty);
        let found = cache.get(product_id).instrument(span.clone()).await;
        span.record("cache.hit", found.as_ref().is_some_and(|hit| hit.current));
        found
    }

    /// How old a figure cached at `cached_at` is.
    fn age(&self, cached_at: DateTime<Utc>) -> Duration {
        (self.now() - cached_at).to_std().unwrap_or_default()
    }

    /// A product's stock and whether `required_quantity` (0 meaning 1) of it
    /// is available: from the cache when it holds the product, else from the
    /// database (and then cached). While the database cannot be reached,
    /// the cached figures are answered, marked stale with their age.
    pub async fn check(&self, product_id: &str, required_quantity: i32) -> Result<CheckOutcome> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let required_quantity = rules::required_quantity(required_quantity);
        let outcome = |stock: StockLevel, stale| CheckOutcome {
            available: stock.available_quantity() >= required_quantity,
            stock,
            required_quantity,
            stale,
        };
        let cached = self.cached(product_id).await;
        if let Mode::ReadOnly { since, reason } = self.availability.mode() {
            return match cached {
                Some(hit) => {
                    let age = self.age(hit.cached_at);
                    Ok(outcome(hit.stock, Some(age)))
                }
                None => Err(Error::ReadOnly { since, reason }),
            };
        }
        let stock = match cached.filter(|hit| hit.current) {
            Some(hit) => hit.stock,
            None => {
                let read = self.store.stock(product_id).await;
                self.availability.observe(&read);
                let stock = match read {
                    Ok(stock) => stock,
                    Err(error) => return Err(error.into()),
                }
                .ok_or_else(|| Error::ProductNotFound {
                    product_id: product_id.to_owned(),
                })?;
                if let Some(cache) = &self.cache {
                    cache.put(std::slice::from_ref(&stock), self.now()).await;
                }
                stock
            }
        };
        if self.settings.record_checks {
            self.db(self.store.record_history(check_entry(
                product_id,
                required_quantity,
                stock.available_quantity(),
                self.now(),
            )))
            .await?;
        }
        Ok(outcome(stock, None))
    }

    /// Holds `quantity` of a product for an order for `timeout_seconds` (0:
    /// the default). A retry with the same quantity returns the first
    /// reservation; another quantity is a conflict.
    pub async fn reserve(
        &self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
        timeout_seconds: i32,
    ) -> Result<ReservationResult> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let timeout = self.reservation_timeout(timeout_seconds)?;
        let command = Command::Reserve(NewReservation {
            id: new_id(),
            product_id: product_id.to_owned(),
            order_id: order_id.to_owned(),
            quantity,
            timeout,
        });
        let Outcome::Reserve(outcome) = self.run(command).await? else {
            return Err(mismatched("reserve"));
        };
        match outcome {
            ReserveOutcome::Created { reservation, stock } => Ok(ReservationResult {
                reservation,
                stock,
                created: true,
            }),
            ReserveOutcome::Existing { reservation, stock } => {
                if reservation.quantity != quantity {
                    return Err(Error::ReservationConflict {
                        product_id: product_id.to_owned(),
                        order_id: order_id.to_owned(),
                        existing_quantity: reservation.quantity,
                        requested: quantity,
                    });
                }
                Ok(ReservationResult {
                    reservation,
                    stock,
                    created: false,
                })
            }
            ReserveOutcome::ProductNotFound => Err(Error::ProductNotFound {
                product_id: product_id.to_owned(),
            }),
            ReserveOutcome::InsufficientStock { stock } => Err(Error::InsufficientStock {
                product_id: product_id.to_owned(),
                requested: quantity,
                available: stock.available_quantity(),
                alternatives: self.fillable_alternatives(product_id, quantity).await,
            }),
        }
    }

    /// The alternatives of a product that could fill `requested` now, for
    /// a refusal. Read after the refusal, outside its transaction: a
    /// suggestion, not a hold. A failure to read them leaves them out
    /// rather than turning the refusal into another error.
    async fn fillable_alternatives(&self, product_id: &str, requested: i32) -> Vec<Alternative> {
        match self.store.alternatives(product_id).await {
            Ok(Some(stocks)) => rules::fillable_alternatives(&stocks, requested),
            Ok(None) => Vec::new(),
            Err(error) => {
                tracing::warn!(%error, "reading the alternatives of a short product failed");
                Vec::new()
            }
        }
    }

    /// Replaces a product's alternatives (in order; empty: none). Each must
    /// exist, be named once and not be the product itself. Answers their
    /// stock, in order.
    pub async fn set_alternatives(
        &self,
        product_id: &str,
        alternative_ids: &[String],
    ) -> Result<Vec<StockLevel>> {
        let product_id = rules::canonical_id("product_id", product_id)?.into_owned();
        let alternatives = rules::alternatives(&product_id, alternative_ids)?;
        let command = Command::SetAlternatives(AlternativesUpdate {
            product_id: product_id.clone(),
            alternatives,
        });
        let Outcome::SetAlternatives(outcome) = self.run(command).await? else {
            return Err(mismatched("set_alternatives"));
        };
        match outcome {
            AlternativesOutcome::Set => self.alternatives(&product_id).await,
            AlternativesOutcome::ProductNotFound => Err(Error::ProductNotFound { product_id }),
            AlternativesOutcome::UnknownAlternatives(product_ids) => {
                Err(Error::ProductsNotFound { product_ids })
            }
        }
    }

    /// Sets a product's unit cost (`None`: clears it), for the stock value
    /// the metrics show. Answers the cost as set.
    pub async fn set_unit_cost(
        &self,
        product_id: &str,
        cost: Option<(&str, i64)>,
    ) -> Result<Option<Money>> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        // An ISO 4217 code and 0 to 10^12 minor units: the contract's rules.
        let cost = cost.map(|(currency, minor_units)| Money {
            currency: currency.to_owned(),
            minor_units,
        });
        if self
            .db(self.store.set_unit_cost(&product_id, cost.clone()))
            .await?
        {
            Ok(cost)
        } else {
            Err(Error::ProductNotFound {
                product_id: product_id.into_owned(),
            })
        }
    }

    /// The whole stock now, for the metrics.
    pub async fn stock_totals(&self) -> Result<StockTotals> {
        self.db(self.store.stock_totals()).await
    }

    /// A product's alternatives with their stock, in order.
    pub async fn alternatives(&self, product_id: &str) -> Result<Vec<StockLevel>> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        self.db(self.store.alternatives(&product_id))
            .await?
            .ok_or_else(|| Error::ProductNotFound {
                product_id: product_id.into_owned(),
            })
    }

    /// How long a reservation asked for `timeout_seconds` lives.
    fn reservation_timeout(&self, timeout_seconds: i32) -> Result<chrono::Duration> {
        lifetime(rules::reservation_timeout(
            timeout_seconds,
            self.settings.default_reservation_timeout,
            self.settings.max_reservation_timeout,
        )?)
    }

    /// Gives back `quantity` (0: all) of what an order's reservation of a
    /// product holds. A reservation no longer active is answered with
    /// nothing released. With a `request_id` (empty: none), a retry gets the
    /// first result back.
    pub async fn release(
        &self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
        request_id: &str,
    ) -> Result<ReleaseResult> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let requested = rules::release_quantity(quantity);
        let key = request_key(
            request_id,
            "ReleaseInventory",
            json!({"product_id": product_id, "order_id": order_id, "quantity": quantity}),
        )?;
        let command = Command::Release(ReleaseRequest {
            product_id: product_id.to_owned(),
            order_id: order_id.to_owned(),
            quantity: requested,
            key: key.clone(),
        });
        let Outcome::Release(keyed) = self.run(command).await? else {
            return Err(mismatched("release"));
        };
        let (outcome, replayed) = unkeyed(keyed, key.as_ref())?;
        match outcome {
            ReleaseOutcome::Released {
                reservation,
                released,
                stock,
            } => Ok(ReleaseResult {
                reservation,
                released,
                stock,
                replayed,
            }),
            ReleaseOutcome::NotActive { reservation, stock } => Ok(ReleaseResult {
                reservation,
                released: 0,
                stock,
                replayed,
            }),
            ReleaseOutcome::ExceedsHeld { reservation } => Err(Error::ReleaseExceedsHeld {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                requested: requested.unwrap_or_default(),
                held: reservation.held_quantity(),
            }),
            ReleaseOutcome::NotFound => Err(Error::ReservationNotFound {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
            }),
        }
    }

    /// Commits `quantity` (0: all) of what an order's reservation of a product
    /// holds: it leaves the stock on hand and the hold at once. The
    /// remainder of a partial commit stays held; the reservation stays
    /// active until it is committed, released or expires. Committing a
    /// committed reservation again is answered with nothing committed; a
    /// released or expired one cannot be committed. With a `request_id`
    /// (empty: none), a retry gets the first result back.
    pub async fn commit(
        &self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
        request_id: &str,
    ) -> Result<CommitResult> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let requested = rules::commit_quantity(quantity);
        let key = request_key(
            request_id,
            "CommitReservation",
            json!({"product_id": product_id, "order_id": order_id, "quantity": quantity}),
        )?;
        let command = Command::Commit(CommitRequest {
            product_id: product_id.to_owned(),
            order_id: order_id.to_owned(),
            quantity: requested,
            key: key.clone(),
        });
        let Outcome::Commit(keyed) = self.run(command).await? else {
            return Err(mismatched("commit"));
        };
        let (outcome, replayed) = unkeyed(keyed, key.as_ref())?;
        match outcome {
            CommitOutcome::Committed {
                reservation,
                committed,
                stock,
            } => Ok(CommitResult {
                reservation,
                committed,
                stock,
                replayed,
            }),
            CommitOutcome::AlreadyCommitted { reservation, stock } => Ok(CommitResult {
                reservation,
                committed: 0,
                stock,
                replayed,
            }),
            CommitOutcome::NotActive { reservation } => Err(Error::ReservationNotActive {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                status: reservation.status.as_str(),
            }),
            CommitOutcome::ExceedsHeld { reservation } => Err(Error::CommitExceedsHeld {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                requested: requested.unwrap_or_default(),
                held: reservation.held_quantity(),
            }),
            CommitOutcome::NotFound => Err(Error::ReservationNotFound {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
            }),
        }
    }

    /// Releases everything every active reservation of an order holds, and
    /// returns what was released per product (by product id). An order with
    /// nothing active is answered with an empty list; an order that never
    /// reserved anything is not found. With a `request_id` (empty: none), a
    /// retry gets the first result back.
    pub async fn release_order(
        &self,
        order_id: &str,
        request_id: &str,
    ) -> Result<OrderReleaseResult> {
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let key = request_key(request_id, "ReleaseOrder", json!({"order_id": order_id}))?;
        let command = Command::ReleaseOrder(OrderRelease {
            order_id: order_id.to_owned(),
            key: key.clone(),
        });
        let Outcome::ReleaseOrder(keyed) = self.run(command).await? else {
            return Err(mismatched("release_order"));
        };
        match unkeyed(keyed, key.as_ref())? {
            (ReleaseOrderOutcome::Released(holds), replayed) => Ok(OrderReleaseResult {
                order_id: order_id.to_owned(),
                items: holds
                    .into_iter()
                    .map(|hold| OrderReleaseItem {
                        reservation: hold.reservation,
                        released: hold.released,
                        stock: hold.stock,
                    })
                    .collect(),
                replayed,
            }),
            (ReleaseOrderOutcome::NotFound, _) => Err(Error::OrderNotFound {
                order_id: order_id.to_owned(),
            }),
        }
    }

    /// Holds stock of several products for one order, all or nothing, for
    /// `timeout_seconds` (0: the default). Quantities of the same product are
    /// added up first. Nothing is held unless every product exists and has
    /// enough available; the error then lists every product at fault. The
    /// order id makes it safe to retry: products the order already holds in
    /// the same quantity are returned as they are; another quantity is a
    /// conflict.
    pub async fn reserve_order(
        &self,
        order_id: &str,
        items: &[(String, i32)],
        timeout_seconds: i32,
    ) -> Result<OrderReservationResult> {
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let demand = rules::order_demand(items)?;
        let timeout = self.reservation_timeout(timeout_seconds)?;
        let command = Command::ReserveOrder(NewOrderReservation {
            order_id: order_id.to_owned(),
            items: demand
                .into_iter()
                .map(|(product_id, quantity)| OrderItem {
                    id: new_id(),
                    product_id,
                    quantity,
                })
                .collect(),
            timeout,
        });
        let Outcome::ReserveOrder(outcome) = self.run(command).await? else {
            return Err(mismatched("reserve_order"));
        };
        match outcome {
            ReserveOrderOutcome::Reserved(items) => Ok(OrderReservationResult {
                order_id: order_id.to_owned(),
                items: items
                    .into_iter()
                    .map(|item| ReservationResult {
                        reservation: item.reservation,
                        stock: item.stock,
                        created: item.created,
                    })
                    .collect(),
            }),
            ReserveOrderOutcome::Conflicting(conflicts) => Err(Error::OrderItemsConflict {
                order_id: order_id.to_owned(),
                conflicts,
            }),
            ReserveOrderOutcome::ProductsNotFound(product_ids) => {
                Err(Error::ProductsNotFound { product_ids })
            }
            ReserveOrderOutcome::Insufficient(shortages) => Err(Error::InsufficientStockForOrder {
                order_id: order_id.to_owned(),
                shortages,
            }),
        }
    }

    /// Every reservation of an order, whatever its status, by product id. An
    /// order that never reserved anything is not found.
    pub async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        let order_id = rules::canonical_id("order_id", order_id)?;
        let order_id = order_id.as_ref();
        let reservations = self.db(self.store.order_reservations(order_id)).await?;
        if reservations.is_empty() {
            return Err(Error::OrderNotFound {
                order_id: order_id.to_owned(),
            });
        }
        Ok(reservations)
    }

    /// One page of every product's stock, by product id, from the database
    /// (and then cached). While the database cannot be reached, the page is
    /// what the cache holds, marked stale with the age of its oldest figure.
    pub async fn list_stock(&self, page_size: i32, page_token: &str) -> Result<StockPage> {
        let page_size = rules::page_size(page_size);
        let after = rules::decode_inventory_page_token(page_token)?;
        let from_database = match self.availability.mode() {
            Mode::Normal => {
                // One extra product tells whether another page follows.
                let read = self.store.list_stock(after.clone(), page_size + 1).await;
                self.availability.observe(&read);
                match read {
                    Ok(items) => Some(items),
                    Err(error) if !error.is_transient() || self.cache.is_none() => {
                        return Err(error.into());
                    }
                    Err(_) => None,
                }
            }
            Mode::ReadOnly { .. } => None,
        };
        let (mut items, stale) = match from_database {
            Some(items) => {
                if let Some(cache) = &self.cache {
                    cache.put(&items, self.now()).await;
                }
                (items, None)
            }
            None => {
                let Some(cache) = &self.cache else {
                    let Mode::ReadOnly { since, reason } = self.availability.mode() else {
                        return Err(mismatched("list"));
                    };
                    return Err(Error::ReadOnly { since, reason });
                };
                let cached = cache.list(after.as_deref(), page_size + 1).await;
                let oldest = cached.iter().map(|c| c.cached_at).min();
                let age = oldest.map_or(Duration::ZERO, |at| self.age(at));
                (cached.into_iter().map(|c| c.stock).collect(), Some(age))
            }
        };
        let next_page_token = if items.len() > page_size as usize {
            items.truncate(page_size as usize);
            items
                .last()
                .map(|last| rules::encode_inventory_page_token(&last.product_id))
        } else {
            None
        };
        Ok(StockPage {
            items,
            next_page_token,
            stale,
        })
    }

    /// Sets, adds to or subtracts from a product's stock on hand.
    ///
    /// The product's row is locked while the update is decided and written,
    /// so concurrent updates and reservations of a product wait for each
    /// other in turn, and none is refused because others ran at the same
    /// time. With `expected_version`, the update applies only to that
    /// version of the product (compare-and-set; 0: the product must not
    /// exist yet). With a `request_id` (empty: none), a retry gets the first
    /// result back.
    pub async fn update(
        &self,
        product_id: &str,
        operation: &str,
        quantity: i32,
        expected_version: Option<i64>,
        request_id: &str,
    ) -> Result<UpdateResult> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let change = rules::stock_change(operation, quantity)?;
        let key = request_key(
            request_id,
            "UpdateInventory",
            json!({
                "product_id": product_id,
                "operation": change.name(),
                "quantity": quantity,
                "expected_version": expected_version,
            }),
        )?;
        let command = Command::Update(StockUpdate {
            product_id: product_id.to_owned(),
            change,
            expected_version,
            key: key.clone(),
        });
        let Outcome::Update(keyed) = self.run(command).await? else {
            return Err(mismatched("update"));
        };
        match unkeyed(keyed, key.as_ref())? {
            (UpdateOutcome::Applied { plan, stock }, replayed) => Ok(UpdateResult {
                stock,
                plan,
                replayed,
            }),
            (UpdateOutcome::VersionMismatch { current }, _) => Err(Error::VersionMismatch {
                product_id: product_id.to_owned(),
                expected: expected_version.unwrap_or_default(),
                current,
            }),
            (UpdateOutcome::Rejected(error), _) => Err(error),
        }
    }

    /// Sets a product's low-stock threshold (`None`: clears it): changes
    /// that take its available stock from above the threshold to it or
    /// below raise a low-stock event. Answers the product's stock. (Never
    /// negative: the contract's rule.)
    pub async fn set_low_stock_threshold(
        &self,
        product_id: &str,
        threshold: Option<i32>,
    ) -> Result<StockLevel> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let command = Command::SetThreshold(ThresholdUpdate {
            product_id: product_id.clone().into_owned(),
            threshold,
        });
        let Outcome::SetThreshold(stock) = self.run(command).await? else {
            return Err(mismatched("set_threshold"));
        };
        stock.ok_or_else(|| Error::ProductNotFound {
            product_id: product_id.into_owned(),
        })
    }

    /// One page of a product's history, newest first.
    pub async fn history(
        &self,
        product_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<HistoryPage> {
        let product_id = rules::canonical_id("product_id", product_id)?;
        let product_id = product_id.as_ref();
        let page_size = rules::page_size(page_size);
        let after = rules::decode_page_token(page_token)?;
        // One extra entry tells whether another page follows.
        let mut entries = self
            .db(self.store.history(product_id, after, page_size + 1))
            .await?
            .ok_or_else(|| Error::ProductNotFound {
                product_id: product_id.to_owned(),
            })?;
        let next_page_token = if entries.len() > page_size as usize {
            entries.truncate(page_size as usize);
            entries.last().map(|last| {
                rules::encode_page_token(&HistoryCursor {
                    created_at: last.created_at,
                    id: last.id.clone(),
                })
            })
        } else {
            None
        };
        Ok(HistoryPage {
            entries,
            next_page_token,
        })
    }

    /// Forgets the request keys older than `inventory.request_id_ttl`, in
    /// batches of `batch_size`. Returns how many were forgotten.
    pub async fn purge_request_keys(&self, batch_size: u32) -> Result<usize> {
        let ttl = chrono::Duration::from_std(self.settings.request_id_ttl)
            .map_err(|_| Error::invalid("request_id_ttl", "duration.range", "is too large"))?;
        let before = self.now() - ttl;
        let mut total = 0;
        loop {
            let purged = self
                .db(self.store.purge_request_keys(before, batch_size))
                .await?;
            total += purged;
            if purged < batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// The changes of stock of `product_ids` (every product when empty),
    /// committed after position `after` (from now on when `None`), in
    /// commit order, as a stream that ends only with an error (see
    /// [`EventHub::watch`]). Ids are checked and normalized as everywhere.
    pub async fn watch(
        &self,
        product_ids: &[String],
        after: Option<i64>,
    ) -> Result<impl futures_util::Stream<Item = Result<PositionedEvent>> + Send + 'static> {
        if !self.settings.events.enabled {
            return Err(Error::EventsDisabled);
        }
        let products = product_ids
            .iter()
            .map(|id| rules::canonical_id("product_ids", id).map(|id| id.into_owned()))
            .collect::<Result<BTreeSet<String>>>()?;
        // `after` is never negative: the contract's rule.
        self.events.watch(products, after).await
    }

    /// Ends every watch (the service is shutting down).
    pub fn close_watches(&self) {
        self.events.close();
    }

    /// Forgets the events older than `events.retention`, in batches of
    /// `batch_size`, from the start of the outbox. Returns how many were
    /// forgotten.
    pub async fn purge_events(&self, batch_size: u32) -> Result<usize> {
        let retention = chrono::Duration::from_std(self.settings.events.retention)
            .map_err(|_| Error::invalid("events.retention", "duration.range", "is too large"))?;
        let before = self.now() - retention;
        let mut total = 0;
        loop {
            let purged = self.db(self.store.purge_events(before, batch_size)).await?;
            total += purged;
            if purged < batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// Expires every reservation whose timeout has passed, in batches of
    /// `batch_size`. Returns how many were expired.
    pub async fn expire_due_reservations(&self, batch_size: u32) -> Result<usize> {
        let mut total = 0;
        loop {
            // Outside the batches: a sweep must not hold up the calls of a lane.
            let command = Command::Expire { limit: batch_size };
            let Outcome::Expire(expired) = self.run_alone(command).await? else {
                return Err(mismatched("expire"));
            };
            total += expired.len();
            for reservation in &expired {
                tracing::info!(
                    reservation.id = %reservation.id,
                    inventory.product_id = %reservation.product_id,
                    order.id = %reservation.order_id,
                    inventory.quantity = reservation.quantity
                        - reservation.released_quantity
                        - reservation.committed_quantity,
                    "reservation expired; its stock is available again"
                );
            }
            if expired.len() < batch_size as usize {
                return Ok(total);
            }
        }
    }
}
#[cfg(test)]
mod tests {
    //! Every use case and every rule against the in-memory store, with a
    //! clock the tests move: no database, no sleeping.

    use std::sync::Mutex;

    use super::*;
    use crate::domain::batch::{RACE_ATTEMPTS, RACE_BUDGET};
    use crate::domain::memory::MemoryStore;
    use crate::domain::{OperationType, ReservationStatus};

    /// A clock that stands still until a test moves it.
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().expect("clock");
            *now += chrono::Duration::from_std(by).expect("duration");
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().expect("clock")
        }
    }

    struct Fixture {
        inventory: Inventory,
        store: Arc<MemoryStore>,
        clock: Arc<ManualClock>,
    }

    fn fixture_with(record_checks: bool) -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
        let inventory = Inventory::with_parts(
            store.clone(),
            InventorySettings {
                default_reservation_timeout: Duration::from_secs(300),
                max_reservation_timeout: Duration::from_secs(3600),
                record_checks,
                request_id_ttl: Duration::from_secs(3600),
                events: crate::domain::events::EventSettings::default(),
                batch: None,
            },
            Parts {
                clock: Some(clock.clone()),
                ..Parts::default()
            },
        );
        Fixture {
            inventory,
            store,
            clock,
        }
    }

    async fn fixture_with_async(record_checks: bool) -> Fixture {
        fixture_with(record_checks)
    }

    async fn fixture() -> Fixture {
        fixture_with(false)
    }

    async fn stocked(quantity: i32) -> Fixture {
        let f = fixture().await;
        f.inventory
            .update("p1", "set", quantity, None, "")
            .await
            .expect("stock p1");
        f
    }

    async fn levels(f: &Fixture) -> (i32, i32) {
        levels_of(f, "p1").await
    }

    async fn levels_of(f: &Fixture, product: &str) -> (i32, i32) {
        let s = f.inventory.check(product, 1).await.expect("check").stock;
        (s.total_quantity, s.reserved_quantity)
    }

    #[tokio::test]
    async fn check_reports_total_reserved_and_availability() {
        let f = stocked(10).await;
        f.inventory
            .reserve("p1", "o1", 4, 0)
            .await
            .expect("reserve");
        let outcome = f.inventory.check("p1", 6).await.expect("check");
        assert_eq!(outcome.stock.total_quantity, 10);
        assert_eq!(outcome.stock.reserved_quantity, 4);
        assert_eq!(outcome.stock.available_quantity(), 6);
        assert!(outcome.available);
        assert!(!f.inventory.check("p1", 7).await.expect("check").available);
        assert_eq!(
            f.inventory
                .check("p1", 0)
                .await
                .expect("check")
                .required_quantity,
            1
        );
        assert!(matches!(
            f.inventory.check("missing", 1).await,
            Err(Error::ProductNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn reserve_holds_stock_with_the_default_or_requested_timeout() {
        let f = stocked(10).await;
        let before = f.clock.now();
        let r = f
            .inventory
            .reserve("p1", "o1", 3, 0)
            .await
            .expect("reserve");
        assert!(r.created);
        assert_eq!(r.reservation.status, ReservationStatus::Active);
        assert_eq!(r.reservation.held_quantity(), 3);
        assert_eq!(r.stock.available_quantity(), 7);
        let lifetime = r.reservation.expires_at - before;
        assert!((299..=301).contains(&lifetime.num_seconds()), "{lifetime}");
        let r2 = f
            .inventory
            .reserve("p1", "o2", 1, 60)
            .await
            .expect("reserve");
        assert_eq!(
            (r2.reservation.expires_at - r2.reservation.created_at).num_seconds(),
            60
        );
        assert_eq!(levels(&f).await, (10, 4));
    }

    #[tokio::test]
    async fn a_refusal_for_lack_of_stock_names_the_alternatives_that_could_fill_it() {
        let f = stocked(1).await;
        for (product, quantity) in [("big", 10), ("small", 1), ("other", 5)] {
            f.inventory
                .update(product, "set", quantity, None, "")
                .await
                .expect("stock");
        }
        let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let set = f
            .inventory
            .set_alternatives("p1", &ids(&["small", "other", "big"]))
            .await
            .expect("set");
        let named: Vec<&str> = set.iter().map(|s| s.product_id.as_str()).collect();
        assert_eq!(named, ["small", "other", "big"]);
        match f.inventory.reserve("p1", "o1", 3, 0).await {
            Err(Error::InsufficientStock { alternatives, .. }) => assert_eq!(
                alternatives,
                [
                    Alternative {
                        product_id: "other".into(),
                        available: 5
                    },
                    Alternative {
                        product_id: "big".into(),
                        available: 10
                    }
                ]
            ),
            other => panic!("expected InsufficientStock, got {other:?}"),
        }
        // Unknown products, itself, twice: refused, nothing changed.
        match f
            .inventory
            .set_alternatives("p1", &ids(&["nope", "big", "gone"]))
            .await
        {
            Err(Error::ProductsNotFound { product_ids }) => {
                assert_eq!(product_ids, ["nope", "gone"]);
            }
            other => panic!("expected ProductsNotFound, got {other:?}"),
        }
        assert!(
            f.inventory
                .set_alternatives("p1", &ids(&["p1"]))
                .await
                .is_err()
        );
        assert!(
            f.inventory
                .set_alternatives("p1", &ids(&["big", "big"]))
                .await
                .is_err()
        );
        match f.inventory.set_alternatives("nope", &ids(&["big"])).await {
            Err(Error::ProductNotFound { .. }) => {}
            other => panic!("expected ProductNotFound, got {other:?}"),
        }
        assert_eq!(f.inventory.alternatives("p1").await.expect("list").len(), 3);
        // Cleared.
        assert!(
            f.inventory
                .set_alternatives("p1", &[])
                .await
                .expect("clear")
                .is_empty()
        );
        match f.inventory.reserve("p1", "o1", 3, 0).await {
            Err(Error::InsufficientStock { alternatives, .. }) => assert!(alternatives.is_empty()),
            other => panic!("expected InsufficientStock, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn insufficient_stock_is_refused_and_changes_nothing() {
        let f = stocked(5).await;
        f.inventory
            .reserve("p1", "o1", 4, 0)
            .await
            .expect("reserve");
        match f.inventory.reserve("p1", "o2", 2, 0).await {
            Err(Error::InsufficientStock {
                requested: 2,
                available: 1,
                ..
            }) => {}
            other => panic!("expected InsufficientStock, got {other:?}"),
        }
        assert_eq!(levels(&f).await, (5, 4));
        let history = f.inventory.history("p1", 100, "").await.expect("history");
        assert_eq!(
            history.entries.len(),
            2,
            "set and one reserve, no failed reserve"
        );
        // The refused order can still reserve what is there.
        f.inventory
            .reserve("p1", "o2", 1, 0)
            .await
            .expect("reserve the rest");
    }

    #[tokio::test]
    async fn reserving_an_unknown_product_is_not_found() {
        let f = fixture().await;
        assert!(matches!(
            f.inventory.reserve("ghost", "o1", 1, 0).await,
            Err(Error::ProductNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_retried_reservation_returns_the_first_with_no_second_effect() {
        let f = stocked(10).await;
        let first = f.inventory.reserve("p1", "o1", 2, 0).await.expect("first");
        let retry = f
            .inventory
            .reserve("p1", "o1", 2, 120)
            .await
            .expect("retry");
        assert!(!retry.created);
        assert_eq!(retry.reservation, first.reservation);
        assert_eq!(levels(&f).await, (10, 2));
        match f.inventory.reserve("p1", "o1", 3, 0).await {
            Err(Error::ReservationConflict {
                existing_quantity: 2,
                requested: 3,
                ..
            }) => {}
            other => panic!("expected ReservationConflict, got {other:?}"),
        }
        assert_eq!(levels(&f).await, (10, 2));
    }

    #[tokio::test]
    async fn release_is_partial_then_whole_then_idempotent() {
        let f = stocked(10).await;
        f.inventory
            .reserve("p1", "o1", 5, 0)
            .await
            .expect("reserve");
        let part = f
            .inventory
            .release("p1", "o1", 2, "")
            .await
            .expect("partial");
        assert_eq!(part.released, 2);
        assert_eq!(part.reservation.held_quantity(), 3);
        assert_eq!(part.reservation.status, ReservationStatus::Active);
        assert_eq!(levels(&f).await, (10, 3));

        match f.inventory.release("p1", "o1", 4, "").await {
            Err(Error::ReleaseExceedsHeld {
                requested: 4,
                held: 3,
                ..
            }) => {}
            other => panic!("expected ReleaseExceedsHeld, got {other:?}"),
        }
        assert_eq!(levels(&f).await, (10, 3));

        let rest = f
            .inventory
            .release("p1", "o1", 0, "")
            .await
            .expect("the rest");
        assert_eq!(rest.released, 3);
        assert_eq!(rest.reservation.status, ReservationStatus::Released);
        assert_eq!(levels(&f).await, (10, 0));

        let again = f.inventory.release("p1", "o1", 0, "").await.expect("again");
        assert_eq!(again.released, 0);
        assert_eq!(again.reservation.status, ReservationStatus::Released);
        assert_eq!(levels(&f).await, (10, 0));

        assert!(matches!(
            f.inventory.release("p1", "nobody", 1, "").await,
            Err(Error::ReservationNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn commit_is_partial_then_whole_then_idempotent() {
        let f = stocked(10).await;
        f.inventory
            .reserve("p1", "o1", 5, 0)
            .await
            .expect("reserve");
        let part = f
            .inventory
            .commit("p1", "o1", 2, "")
            .await
            .expect("partial");
        assert_eq!(part.committed, 2);
        assert_eq!(part.reservation.status, ReservationStatus::Active);
        assert_eq!(part.reservation.held_quantity(), 3);
        assert_eq!(part.reservation.committed_quantity, 2);
        assert_eq!(levels(&f).await, (8, 3));

        match f.inventory.commit("p1", "o1", 4, "").await {
            Err(Error::CommitExceedsHeld {
                requested: 4,
                held: 3,
                ..
            }) => {}
            other => panic!("expected CommitExceedsHeld, got {other:?}"),
        }
        let rest = f
            .inventory
            .commit("p1", "o1", 0, "")
            .await
            .expect("the rest");
        assert_eq!(rest.committed, 3);
        assert_eq!(rest.reservation.status, ReservationStatus::Committed);
        assert_eq!(rest.stock.available_quantity(), 5);
        assert_eq!(levels(&f).await, (5, 0));

        let again = f.inventory.commit("p1", "o1", 0, "").await.expect("again");
        assert_eq!(again.committed, 0);
        assert_eq!(again.reservation.status, ReservationStatus::Committed);
        let release = f
            .inventory
            .release("p1", "o1", 0, "")
            .await
            .expect("release");
        assert_eq!(release.released, 0);
        assert_eq!(levels(&f).await, (5, 0));

        let newest = &f.inventory.history("p1", 1, "").await.expect("h").entries[0];
        assert_eq!(newest.operation, OperationType::Commit);
        assert_eq!(newest.quantity_change, 0);
        assert_eq!(newest.metadata["reason"], "committed");
        assert_eq!(newest.metadata["quantity"], 3);
        assert_eq!(newest.metadata["current_quantity"], 5);

        assert!(matches!(
            f.inventory.commit("p1", "nobody", 0, "").await,
            Err(Error::ReservationNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_released_or_expired_reservation_cannot_be_committed() {
        let f = stocked(10).await;
        f.inventory
            .reserve("p1", "o1", 4, 0)
            .await
            .expect("reserve");
        f.inventory
            .commit("p1", "o1", 1, "")
            .await
            .expect("partial");
        let released = f.inventory.release("p1", "o1", 0, "").await.expect("rest");
        assert_eq!(released.released, 3);
        assert_eq!(released.reservation.status, ReservationStatus::Released);
        match f.inventory.commit("p1", "o1", 0, "").await {
            Err(Error::ReservationNotActive {
                status: "released", ..
            }) => {}
            other => panic!("expected ReservationNotActive, got {other:?}"),
        }
        f.inventory.reserve("p1", "o2", 2, 1).await.expect("short");
        f.clock.advance(Duration::from_millis(1100));
        f.inventory
            .expire_due_reservations(10)
            .await
            .expect("sweep");
        assert!(matches!(
            f.inventory.commit("p1", "o2", 0, "").await,
            Err(Error::ReservationNotActive {
                status: "expired",
                ..
            })
        ));
        assert_eq!(levels(&f).await, (9, 0));
    }

    #[tokio::test]
    async fn releasing_an_order_frees_every_product_once() {
        let f = stocked(10).await;
        f.inventory
            .update("p2", "set", 5, None, "")
            .await
            .expect("p2");
        f.inventory.reserve("p2", "o1", 2, 0).await.expect("p2");
        f.inventory.reserve("p1", "o1", 3, 0).await.expect("p1");
        f.inventory
            .reserve("p1", "o2", 1, 0)
            .await
            .expect("other order");
        let released = f
            .inventory
            .release_order("o1", "")
            .await
            .expect("release")
            .items;
        let items: Vec<(&str, i32)> = released
            .iter()
            .map(|r| (r.reservation.product_id.as_str(), r.released))
            .collect();
        assert_eq!(items, vec![("p1", 3), ("p2", 2)]);
        assert!(
            released
                .iter()
                .all(|r| r.reservation.status == ReservationStatus::Released)
        );
        assert_eq!(levels(&f).await, (10, 1));
        assert!(
            f.inventory
                .release_order("o1", "")
                .await
                .expect("again")
                .items
                .is_empty()
        );
        assert!(matches!(
            f.inventory.release_order("ghost", "").await,
            Err(Error::OrderNotFound { .. })
        ));

        let listed = f.inventory.order_reservations("o1").await.expect("list");
        let products: Vec<&str> = listed.iter().map(|r| r.product_id.as_str()).collect();
        assert_eq!(products, vec!["p1", "p2"]);
        assert!(matches!(
            f.inventory.order_reservations("ghost").await,
            Err(Error::OrderNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn the_stock_list_pages_by_product_id() {
        let f = fixture().await;
        for product in ["c", "a", "e", "b", "d"] {
            f.inventory
                .update(product, "set", 1, None, "")
                .await
                .expect("set");
        }
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = f.inventory.list_stock(2, &token).await.expect("page");
            assert!(page.items.len() <= 2);
            seen.extend(page.items.into_iter().map(|s| s.product_id));
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        assert_eq!(seen, vec!["a", "b", "c", "d", "e"]);
        assert!(matches!(
            f.inventory.list_stock(0, "garbage").await,
            Err(Error::InvalidArgument {
                field: "page_token",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn updates_set_add_subtract_and_respect_reservations() {
        let f = fixture().await;
        let created = f
            .inventory
            .update("p1", "add", 5, None, "")
            .await
            .expect("add creates");
        assert!(created.plan.creates_product);
        assert_eq!(created.stock.total_quantity, 5);
        f.inventory
            .update("p1", "set", 100, None, "")
            .await
            .expect("set");
        f.inventory
            .reserve("p1", "o1", 40, 0)
            .await
            .expect("reserve");
        let sub = f
            .inventory
            .update("p1", "subtract", 60, None, "")
            .await
            .expect("subtract");
        assert_eq!(
            (sub.plan.previous_total, sub.stock.total_quantity),
            (100, 40)
        );
        assert_eq!(sub.plan.delta(), -60);
        assert!(matches!(
            f.inventory.update("p1", "subtract", 1, None, "").await,
            Err(Error::BelowReserved { .. })
        ));
        assert!(matches!(
            f.inventory.update("p1", "set", 39, None, "").await,
            Err(Error::BelowReserved { .. })
        ));
        assert!(matches!(
            f.inventory.update("ghost", "subtract", 1, None, "").await,
            Err(Error::ProductNotFound { .. })
        ));
        assert_eq!(levels(&f).await, (40, 40));
    }

    #[tokio::test]
    async fn history_records_signed_changes_newest_first_in_pages() {
        let f = stocked(10).await;
        f.inventory
            .update("p1", "add", 5, None, "")
            .await
            .expect("add");
        f.inventory
            .reserve("p1", "o1", 3, 0)
            .await
            .expect("reserve");
        f.inventory
            .release("p1", "o1", 1, "")
            .await
            .expect("release");
        f.inventory
            .update("p1", "subtract", 2, None, "")
            .await
            .expect("subtract");

        let all = f.inventory.history("p1", 0, "").await.expect("history");
        let changes: Vec<(OperationType, i32)> = all
            .entries
            .iter()
            .map(|e| (e.operation, e.quantity_change))
            .collect();
        assert_eq!(
            changes,
            vec![
                (OperationType::Update, -2),
                (OperationType::Release, 1),
                (OperationType::Reserve, -3),
                (OperationType::Update, 5),
                (OperationType::Update, 10),
            ]
        );
        assert!(all.next_page_token.is_none());
        let reserve = &all.entries[2];
        assert_eq!(reserve.order_id.as_deref(), Some("o1"));
        assert_eq!(reserve.metadata["quantity"], 3);

        let mut token = String::new();
        let mut paged = Vec::new();
        loop {
            let page = f.inventory.history("p1", 2, &token).await.expect("page");
            assert!(page.entries.len() <= 2);
            paged.extend(page.entries.into_iter().map(|e| e.id));
            match page.next_page_token {
                Some(next) => token = next,
                None => break,
            }
        }
        let ids: Vec<String> = all.entries.into_iter().map(|e| e.id).collect();
        assert_eq!(paged, ids);

        assert!(matches!(
            f.inventory.history("ghost", 0, "").await,
            Err(Error::ProductNotFound { .. })
        ));
        assert!(matches!(
            f.inventory.history("p1", 0, "garbage").await,
            Err(Error::InvalidArgument {
                field: "page_token",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn checks_are_recorded_only_when_switched_on() {
        let off = fixture_with_async(false).await;
        off.inventory
            .update("p1", "set", 1, None, "")
            .await
            .expect("set");
        off.inventory.check("p1", 1).await.expect("check");
        assert_eq!(
            off.inventory
                .history("p1", 0, "")
                .await
                .expect("h")
                .entries
                .len(),
            1
        );

        let on = fixture_with_async(true).await;
        on.inventory
            .update("p1", "set", 1, None, "")
            .await
            .expect("set");
        on.inventory.check("p1", 2).await.expect("check");
        let entries = on.inventory.history("p1", 0, "").await.expect("h").entries;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].operation, OperationType::Check);
        assert_eq!(entries[0].quantity_change, 0);
        assert_eq!(entries[0].metadata["available"], false);
    }

    #[tokio::test]
    async fn expiry_releases_due_reservations_once_with_the_reason() {
        let f = stocked(10).await;
        f.inventory.reserve("p1", "o1", 3, 1).await.expect("short");
        f.inventory.reserve("p1", "o2", 2, 0).await.expect("long");
        assert_eq!(
            f.inventory
                .expire_due_reservations(10)
                .await
                .expect("sweep"),
            0
        );
        f.clock.advance(Duration::from_millis(1100));
        assert_eq!(
            f.inventory.expire_due_reservations(1).await.expect("sweep"),
            1
        );
        assert_eq!(
            f.inventory
                .expire_due_reservations(10)
                .await
                .expect("sweep"),
            0
        );
        assert_eq!(levels(&f).await, (10, 2));
        let released = f
            .inventory
            .release("p1", "o1", 0, "")
            .await
            .expect("release expired");
        assert_eq!(released.released, 0);
        assert_eq!(released.reservation.status, ReservationStatus::Expired);
        let newest = &f.inventory.history("p1", 1, "").await.expect("h").entries[0];
        assert_eq!(newest.operation, OperationType::Release);
        assert_eq!(newest.quantity_change, 3);
        assert_eq!(newest.metadata["reason"], "expired");
    }

    #[tokio::test]
    async fn invalid_input_is_refused_before_anything_changes() {
        // The field rules of the contract are checked at the edge (see
        // `api::contract`); these are the domain's own: ids too long once
        // in NFC, the configured longest reservation, the operations,
        // overflow, and page tokens.
        let f = stocked(10).await;
        let cases = [
            (
                f.inventory
                    .reserve("p1", &"\u{958}".repeat(255), 1, 0)
                    .await
                    .err(),
                "order_id",
            ),
            (
                f.inventory.reserve("p1", "o1", 1, 3601).await.err(),
                "reservation_timeout",
            ),
            (
                f.inventory.update("p1", "double", 1, None, "").await.err(),
                "operation",
            ),
            (
                f.inventory
                    .update("p1", "add", i32::MAX, None, "")
                    .await
                    .err(),
                "quantity",
            ),
            (
                f.inventory.history("p1", 0, "forged").await.err(),
                "page_token",
            ),
        ];
        for (error, expected) in cases {
            match error {
                Some(Error::InvalidArgument { field, .. }) => assert_eq!(field, expected),
                other => panic!("{expected}: expected InvalidArgument, got {other:?}"),
            }
        }
        assert_eq!(levels(&f).await, (10, 0));
        assert_eq!(
            f.inventory
                .history("p1", 0, "")
                .await
                .expect("h")
                .entries
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_short_reservation_expires_due_holds_first_and_keeps_that_expiry() {
        let f = stocked(5).await;
        f.inventory.reserve("p1", "o1", 4, 1).await.expect("short");
        f.clock.advance(Duration::from_secs(2));
        // o1's hold is past its time: it is expired, and o2 gets the stock.
        let r = f
            .inventory
            .reserve("p1", "o2", 3, 0)
            .await
            .expect("after expiry");
        assert_eq!(r.stock.reserved_quantity, 3);
        let listed = f.inventory.order_reservations("o1").await.expect("o1");
        assert_eq!(listed[0].status, ReservationStatus::Expired);

        // A refusal keeps the expiry it made, and only that.
        f.inventory.reserve("p1", "o3", 2, 1).await.expect("o3");
        f.clock.advance(Duration::from_secs(2));
        match f.inventory.reserve("p1", "o4", 4, 0).await {
            Err(Error::InsufficientStock { available: 2, .. }) => {}
            other => panic!("expected InsufficientStock, got {other:?}"),
        }
        assert_eq!(levels(&f).await, (5, 3));
        let o3 = f.inventory.order_reservations("o3").await.expect("o3");
        assert_eq!(o3[0].status, ReservationStatus::Expired);
        assert!(matches!(
            f.inventory.order_reservations("o4").await,
            Err(Error::OrderNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_order_reserves_all_or_nothing_and_lists_every_fault() {
        let f = stocked(10).await;
        f.inventory
            .update("p2", "set", 3, None, "")
            .await
            .expect("p2");
        let items = |list: &[(&str, i32)]| -> Vec<(String, i32)> {
            list.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect()
        };

        // Quantities of one product add up; one reservation per product.
        let order = f
            .inventory
            .reserve_order("o1", &items(&[("p2", 1), ("p1", 2), ("p2", 1)]), 0)
            .await
            .expect("order");
        let held: Vec<(&str, i32, bool)> = order
            .items
            .iter()
            .map(|i| {
                (
                    i.reservation.product_id.as_str(),
                    i.reservation.quantity,
                    i.created,
                )
            })
            .collect();
        assert_eq!(held, [("p1", 2, true), ("p2", 2, true)]);
        assert_eq!(levels_of(&f, "p2").await, (3, 2));

        // A retry with the same quantities returns the same reservations.
        let again = f
            .inventory
            .reserve_order("o1", &items(&[("p1", 2), ("p2", 2)]), 0)
            .await
            .expect("retry");
        assert!(again.items.iter().all(|i| !i.created));
        assert_eq!(again.items[0].reservation, order.items[0].reservation);

        // Another quantity is a conflict naming each product.
        match f
            .inventory
            .reserve_order("o1", &items(&[("p1", 3), ("p2", 1)]), 0)
            .await
        {
            Err(Error::OrderItemsConflict { conflicts, .. }) => {
                let named: Vec<&str> = conflicts.iter().map(|c| c.product_id.as_str()).collect();
                assert_eq!(named, ["p1", "p2"]);
            }
            other => panic!("expected OrderItemsConflict, got {other:?}"),
        }

        // Missing products are listed before any shortage; nothing is held.
        match f
            .inventory
            .reserve_order(
                "o2",
                &items(&[("p1", 100), ("ghost", 1), ("phantom", 1)]),
                0,
            )
            .await
        {
            Err(Error::ProductsNotFound { product_ids }) => {
                assert_eq!(product_ids, ["ghost", "phantom"]);
            }
            other => panic!("expected ProductsNotFound, got {other:?}"),
        }
        match f
            .inventory
            .reserve_order("o2", &items(&[("p1", 9), ("p2", 2)]), 0)
            .await
        {
            Err(Error::InsufficientStockForOrder { shortages, .. }) => {
                let short: Vec<(&str, i32, i32)> = shortages
                    .iter()
                    .map(|s| (s.product_id.as_str(), s.requested, s.available))
                    .collect();
                assert_eq!(short, [("p1", 9, 8), ("p2", 2, 1)]);
            }
            other => panic!("expected InsufficientStockForOrder, got {other:?}"),
        }
        assert_eq!(
            (levels(&f).await, levels_of(&f, "p2").await),
            ((10, 2), (3, 2))
        );
        assert!(matches!(
            f.inventory.order_reservations("o2").await,
            Err(Error::OrderNotFound { .. })
        ));
        assert!(matches!(
            f.inventory
                .reserve_order("o3", &[("\u{958}".repeat(255), 1)], 0)
                .await,
            Err(Error::InvalidArgument { field: "items", .. })
        ));
    }

    #[tokio::test]
    async fn an_order_short_of_stock_expires_due_holds_before_refusing() {
        let f = stocked(4).await;
        f.inventory.reserve("p1", "old", 3, 1).await.expect("old");
        f.clock.advance(Duration::from_secs(2));
        let order = f
            .inventory
            .reserve_order("o1", &[("p1".to_owned(), 4)], 0)
            .await
            .expect("after expiry");
        assert_eq!(order.items[0].stock.reserved_quantity, 4);
        let old = f.inventory.order_reservations("old").await.expect("old");
        assert_eq!(old[0].status, ReservationStatus::Expired);
    }

    #[tokio::test]
    async fn a_request_id_replays_the_first_result_and_refuses_other_fields() {
        let f = stocked(10).await;
        f.inventory
            .reserve("p1", "o1", 6, 0)
            .await
            .expect("reserve");

        let first = f
            .inventory
            .release("p1", "o1", 2, "rel-1")
            .await
            .expect("release");
        let replay = f
            .inventory
            .release("p1", "o1", 2, "rel-1")
            .await
            .expect("replay");
        assert!(!first.replayed && replay.replayed);
        assert_eq!(replay.released, 2);
        assert_eq!(levels(&f).await, (10, 4), "released once");
        match f.inventory.release("p1", "o1", 3, "rel-1").await {
            Err(Error::RequestIdReused {
                differences,
                fields,
                ..
            }) => {
                assert_eq!(differences, ["quantity: 2, now 3"]);
                assert_eq!(fields, ["quantity"]);
            }
            other => panic!("expected RequestIdReused, got {other:?}"),
        }
        match f.inventory.commit("p1", "o1", 2, "rel-1").await {
            Err(Error::RequestIdReused { fields, .. }) => assert_eq!(fields, ["method"]),
            other => panic!("expected RequestIdReused, got {other:?}"),
        }

        let committed = f
            .inventory
            .commit("p1", "o1", 1, "com-1")
            .await
            .expect("commit");
        let again = f
            .inventory
            .commit("p1", "o1", 1, "com-1")
            .await
            .expect("replay");
        assert!(again.replayed);
        assert_eq!(again.stock, committed.stock);
        assert_eq!(levels(&f).await, (9, 3), "committed once");

        let added = f
            .inventory
            .update("p1", "add", 5, None, "upd-1")
            .await
            .expect("add");
        let replayed = f
            .inventory
            .update("p1", "add", 5, None, "upd-1")
            .await
            .expect("replay");
        assert!(replayed.replayed);
        assert_eq!(replayed.stock.version, added.stock.version);
        assert_eq!(levels(&f).await, (14, 3), "added once");

        let order = f
            .inventory
            .release_order("o1", "ro-1")
            .await
            .expect("release order");
        let replayed = f
            .inventory
            .release_order("o1", "ro-1")
            .await
            .expect("replay");
        assert!(replayed.replayed);
        assert_eq!(replayed.items.len(), order.items.len());
        assert_eq!(levels(&f).await, (14, 0));

        // A refusal is not kept: its retry runs again.
        assert!(matches!(
            f.inventory.release("p1", "nobody", 1, "rel-2").await,
            Err(Error::ReservationNotFound { .. })
        ));
        f.inventory
            .reserve("p1", "nobody", 1, 0)
            .await
            .expect("reserve");
        let later = f
            .inventory
            .release("p1", "nobody", 1, "rel-2")
            .await
            .expect("runs");
        assert!(!later.replayed);
        assert_eq!(later.released, 1);
    }

    #[tokio::test]
    async fn a_compare_and_set_update_applies_only_at_the_expected_version() {
        let f = fixture().await;
        let created = f
            .inventory
            .update("p1", "set", 5, Some(0), "")
            .await
            .expect("create");
        assert_eq!(created.stock.version, 1);
        match f.inventory.update("p1", "set", 7, Some(0), "").await {
            Err(Error::VersionMismatch {
                expected: 0,
                current: 1,
                ..
            }) => {}
            other => panic!("expected VersionMismatch, got {other:?}"),
        }
        let next = f
            .inventory
            .update("p1", "add", 2, Some(1), "")
            .await
            .expect("cas");
        assert_eq!((next.stock.total_quantity, next.stock.version), (7, 2));
        f.inventory
            .reserve("p1", "o1", 3, 0)
            .await
            .expect("reserve");
        let held = f.inventory.check("p1", 1).await.expect("check").stock;
        assert_eq!(held.version, 2, "a reservation leaves the version alone");
        f.inventory.commit("p1", "o1", 1, "").await.expect("commit");
        let committed = f.inventory.check("p1", 1).await.expect("check").stock;
        assert_eq!(committed.version, 3, "a commit changes stock on hand");
    }

    #[tokio::test]
    async fn concurrent_updates_and_reservations_of_one_product_all_succeed() {
        let f = stocked(1_000).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..64 {
            let inventory = f.inventory.clone();
            tasks.spawn(async move {
                match n % 3 {
                    0 => inventory.update("p1", "add", 2, None, "").await.map(drop),
                    1 => inventory
                        .update("p1", "subtract", 1, None, "")
                        .await
                        .map(drop),
                    _ => inventory
                        .reserve("p1", &format!("o{n}"), 1, 0)
                        .await
                        .map(drop),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("never refused for contention");
        }
        // 22 adds of 2, 21 subtractions of 1, 21 reservations of 1.
        assert_eq!(levels(&f).await, (1_000 + 44 - 21, 21));
        let stock = f.inventory.check("p1", 1).await.expect("check").stock;
        assert_eq!(stock.version, 1 + 22 + 21);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_race_runs_again_for_a_bounded_time() {
        let f = stocked(10).await;
        let conflict = || StoreError::Conflict("duplicate key value".into());
        for _ in 0..3 * RACE_ATTEMPTS {
            f.store.fail_next(conflict());
        }
        let added = f
            .inventory
            .update("p1", "add", 1, None, "")
            .await
            .expect("last attempt");
        assert_eq!(added.stock.total_quantity, 11);

        // Other failures are not this layer's to retry.
        f.store
            .fail_next(StoreError::Unavailable("connection closed".into()));
        assert!(matches!(
            f.inventory.reserve("p1", "o1", 1, 0).await,
            Err(Error::Store(StoreError::Unavailable(_)))
        ));

        // Races lost for longer than the budget: the last loss is answered,
        // and nothing was applied.
        for _ in 0..100_000 {
            f.store.fail_next(conflict());
        }
        let started = tokio::time::Instant::now();
        assert!(matches!(
            f.inventory.update("p1", "add", 1, None, "").await,
            Err(Error::Store(StoreError::Conflict(_)))
        ));
        let spent = started.elapsed();
        assert!(
            spent >= RACE_BUDGET && spent < RACE_BUDGET + Duration::from_millis(100),
            "{spent:?}"
        );
        assert_eq!(levels(&f).await, (11, 0));
        f.store.close();
        assert!(matches!(
            f.inventory.ping(Duration::from_secs(1)).await,
            Err(Error::Store(_))
        ));
    }

    #[tokio::test]
    async fn request_keys_are_forgotten_after_their_ttl() {
        let f = stocked(10).await;
        f.inventory
            .update("p1", "add", 1, None, "k-1")
            .await
            .expect("keyed");
        assert_eq!(f.inventory.purge_request_keys(10).await.expect("purge"), 0);
        f.clock.advance(Duration::from_secs(3601));
        assert_eq!(f.inventory.purge_request_keys(10).await.expect("purge"), 1);
        let again = f
            .inventory
            .update("p1", "add", 1, None, "k-1")
            .await
            .expect("new");
        assert!(!again.replayed, "a forgotten key is a new request");
        assert_eq!(levels(&f).await, (12, 0));
    }
}
