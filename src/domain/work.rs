//! A unit of work: the changes of stock to make in one transaction, and the
//! planner that decides them.
//!
//! A [`Work`] holds one or more [`Command`]s. The planner ([`plan`]) runs the
//! decision of each command (see [`super::decide`]) in order against a
//! [`State`]: the rows the store has read so far, as the earlier commands
//! left them. A decision that needs a row nobody has read yet stops with the
//! rows it needs; the planner gathers those of every command into one
//! [`Needs`], the store reads them, and the planner starts again from the
//! rows read. When nothing is missing, it returns each command's [`Outcome`]
//! and the rows to write ([`Changes`]). [`plan_with`] and
//! [`plan_with_async`] run that loop over a store's reads.
//!
//! The planner is pure: the same rows give the same decisions, so a work can
//! be planned again from scratch at no risk.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::Error;
use super::model::{
    ChangeKind, HistoryEntry, ItemConflict, Reservation, ReservationStatus, Shortage, StockChange,
    StockEvent, StockLevel,
};
use super::port::{Changes, KeptRequest, Needs, Rows, StockWrite, StoreError, StoreResult};
use super::rules::UpdatePlan;

/// How many times a work is planned before it gives up as broken: one
/// round per step of reads (keys, stock and reservations; then what those
/// rows point to; then due reservations), with room to spare.
const MAX_ROUNDS: usize = 8;

/// Changes of stock to make in one transaction, planned in order.
#[derive(Debug, Clone)]
pub struct Work {
    /// What to do, in order; each gets its own outcome.
    pub commands: Vec<Command>,
    /// The time of the work: rows it changes are stamped with it, and
    /// reservations expire against it.
    pub now: DateTime<Utc>,
    /// Who asked for each command (aligned with `commands`; missing or
    /// `None`: anonymous), recorded as `actor` in its history entries.
    pub actors: Vec<Option<Arc<str>>>,
    /// One handle per waiting caller, gone once that caller gave up (its
    /// deadline passed): the store then rolls the work back instead of
    /// committing it ([`Work::is_abandoned`]). Empty: nobody can give up.
    pub callers: Vec<Weak<()>>,
}

impl Work {
    /// A work of one command, on behalf of the current
    /// [`super::actor`].
    pub fn single(command: Command, now: DateTime<Utc>) -> Self {
        Self {
            commands: vec![command],
            now,
            actors: vec![super::actor::current()],
            callers: Vec::new(),
        }
    }

    /// Whether a caller of the work has given up, so that it must not be
    /// committed: the store checks this last, before it commits.
    pub fn is_abandoned(&self) -> bool {
        self.callers.iter().any(|caller| caller.strong_count() == 0)
    }

    /// The products the commands name, in product id order (a release of a
    /// whole order and an expiry name none: their products are known only
    /// once their reservations are read).
    pub fn products(&self) -> BTreeSet<&str> {
        let mut products = BTreeSet::new();
        for command in &self.commands {
            match command {
                Command::Reserve(r) => {
                    products.insert(r.product_id.as_str());
                }
                Command::Release(r) => {
                    products.insert(r.product_id.as_str());
                }
                Command::Commit(r) => {
                    products.insert(r.product_id.as_str());
                }
                Command::Update(r) => {
                    products.insert(r.product_id.as_str());
                }
                Command::ReserveOrder(r) => {
                    products.extend(r.items.iter().map(|i| i.product_id.as_str()));
                }
                Command::SetThreshold(r) => {
                    products.insert(r.product_id.as_str());
                }
                Command::SetAlternatives(r) => {
                    products.insert(r.product_id.as_str());
                    products.extend(r.alternatives.iter().map(String::as_str));
                }
                Command::ReleaseOrder(_) | Command::Expire { .. } => {}
            }
        }
        products
    }

    /// Whether running the work twice has the effect of running it once, so
    /// a retry after an unknown outcome is safe: true when every command
    /// finds its own earlier effect (reservations by order and product,
    /// expiry by status, writes with a request key by their key).
    pub fn may_run_twice(&self) -> bool {
        self.commands.iter().all(Command::may_run_twice)
    }
}

/// One change of stock, as a caller asked for it (already validated).
#[derive(Debug, Clone)]
pub enum Command {
    /// Hold stock of one product for an order.
    Reserve(NewReservation),
    /// Hold stock of several products for an order, all or nothing.
    ReserveOrder(NewOrderReservation),
    /// Give back what an order's reservation of a product holds, or part of it.
    Release(ReleaseRequest),
    /// Commit what an order's reservation of a product holds, or part of it.
    Commit(CommitRequest),
    /// Release every active reservation of an order.
    ReleaseOrder(OrderRelease),
    /// Set, add to or subtract from the stock on hand.
    Update(StockUpdate),
    /// Set or clear a product's low-stock threshold.
    SetThreshold(ThresholdUpdate),
    /// Replace a product's alternatives.
    SetAlternatives(AlternativesUpdate),
    /// Expire up to `limit` reservations whose timeout has passed.
    Expire {
        /// Most reservations to expire.
        limit: u32,
    },
}

impl Command {
    /// The command's name, for logs and span attributes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reserve(_) => "reserve",
            Self::ReserveOrder(_) => "reserve_order",
            Self::Release(_) => "release",
            Self::Commit(_) => "commit",
            Self::ReleaseOrder(_) => "release_order",
            Self::Update(_) => "update",
            Self::SetThreshold(_) => "set_threshold",
            Self::SetAlternatives(_) => "set_alternatives",
            Self::Expire { .. } => "expire",
        }
    }

    /// Whether a second run finds the first one's effect (see
    /// [`Work::may_run_twice`]).
    pub fn may_run_twice(&self) -> bool {
        match self {
            Self::Reserve(_)
            | Self::ReserveOrder(_)
            | Self::SetThreshold(_)
            | Self::SetAlternatives(_)
            | Self::Expire { .. } => true,
            Self::Release(r) => r.key.is_some(),
            Self::Commit(r) => r.key.is_some(),
            Self::ReleaseOrder(r) => r.key.is_some(),
            Self::Update(r) => r.key.is_some(),
        }
    }
}

/// A product's low-stock threshold to set (`None`: to clear).
#[derive(Debug, Clone)]
pub struct ThresholdUpdate {
    /// The product.
    pub product_id: String,
    /// The threshold, at least 0; `None` clears it.
    pub threshold: Option<i32>,
}

/// A product's alternatives to set, in their order (already checked by
/// [`super::rules::alternatives`]).
#[derive(Debug, Clone)]
pub struct AlternativesUpdate {
    /// The product.
    pub product_id: String,
    /// Its alternatives, in order; empty clears them.
    pub alternatives: Vec<String>,
}

/// What setting a product's alternatives decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlternativesOutcome {
    /// Set.
    Set,
    /// The product does not exist.
    ProductNotFound,
    /// These alternatives do not exist (in the order given); nothing set.
    UnknownAlternatives(Vec<String>),
}

/// A client's idempotency key and the request it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestKey {
    /// The client's key.
    pub request_id: String,
    /// The RPC, such as `ReleaseInventory`: one key serves one method.
    pub method: &'static str,
    /// The request's fields (without the key), compared with a retry's.
    pub fields: serde_json::Value,
}

/// A reservation to make.
#[derive(Debug, Clone)]
pub struct NewReservation {
    /// Id for the reservation if it is created.
    pub id: String,
    /// The product to hold.
    pub product_id: String,
    /// The order to hold it for.
    pub order_id: String,
    /// How much to hold (at least 1).
    pub quantity: i32,
    /// How long it holds the stock, from the work's time.
    pub timeout: chrono::Duration,
}

/// One product of an order's all-or-nothing reservation.
#[derive(Debug, Clone)]
pub struct OrderItem {
    /// Id for the reservation if it is created.
    pub id: String,
    /// The product to hold.
    pub product_id: String,
    /// How much to hold: the order's whole demand for the product.
    pub quantity: i32,
}

/// An all-or-nothing reservation of several products for one order.
#[derive(Debug, Clone)]
pub struct NewOrderReservation {
    /// The order.
    pub order_id: String,
    /// One item per product, in product id order, each product once.
    pub items: Vec<OrderItem>,
    /// How long the reservations hold the stock, from the work's time.
    pub timeout: chrono::Duration,
}

/// A release to make.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The product held.
    pub product_id: String,
    /// The order it is held for.
    pub order_id: String,
    /// How much to release; `None` releases everything held.
    pub quantity: Option<i32>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// A commit to make: held stock leaves the stock on hand (the order was paid).
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The product held.
    pub product_id: String,
    /// The order it is held for.
    pub order_id: String,
    /// How much to commit; `None` commits everything held.
    pub quantity: Option<i32>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// A release of every active reservation of an order.
#[derive(Debug, Clone)]
pub struct OrderRelease {
    /// The order.
    pub order_id: String,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// A change of stock on hand to make.
#[derive(Debug, Clone)]
pub struct StockUpdate {
    /// The product to change.
    pub product_id: String,
    /// The change.
    pub change: StockChange,
    /// Compare-and-set: apply only if the product's version is this (0: the
    /// product must not exist yet).
    pub expected_version: Option<i64>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// What a command decided.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Of [`Command::Reserve`].
    Reserve(ReserveOutcome),
    /// Of [`Command::ReserveOrder`].
    ReserveOrder(ReserveOrderOutcome),
    /// Of [`Command::Release`].
    Release(Keyed<ReleaseOutcome>),
    /// Of [`Command::Commit`].
    Commit(Keyed<CommitOutcome>),
    /// Of [`Command::ReleaseOrder`].
    ReleaseOrder(Keyed<ReleaseOrderOutcome>),
    /// Of [`Command::Update`].
    Update(Keyed<UpdateOutcome>),
    /// Of [`Command::SetThreshold`]: the stock with its new threshold, or
    /// `None` when the product does not exist.
    SetThreshold(Option<StockLevel>),
    /// Of [`Command::SetAlternatives`].
    SetAlternatives(AlternativesOutcome),
    /// Of [`Command::Expire`]: the reservations expired.
    Expire(Vec<Reservation>),
}

/// What a write made with an optional [`RequestKey`] answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Keyed<T> {
    /// The write ran now.
    Fresh(T),
    /// The key was used before for the same request; this is that request's
    /// result and nothing ran now.
    Replayed(T),
    /// The key was used before for another request; nothing ran now.
    Reused {
        /// The method it was used with.
        method: String,
        /// The fields it was used with.
        fields: serde_json::Value,
    },
}

/// What a reservation decided.
#[derive(Debug, Clone)]
pub enum ReserveOutcome {
    /// The reservation was created and the stock held.
    Created {
        /// The new reservation.
        reservation: Reservation,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The order already has a reservation of this product; nothing changed.
    Existing {
        /// The reservation found.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The product does not exist; nothing changed.
    ProductNotFound,
    /// Not enough available stock; nothing changed but the expiry of the
    /// product's reservations already past their time.
    InsufficientStock {
        /// The product's stock now.
        stock: StockLevel,
    },
}

/// One product of [`ReserveOrderOutcome::Reserved`].
#[derive(Debug, Clone)]
pub struct ReservedItem {
    /// The reservation, new or found again.
    pub reservation: Reservation,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// False when the order already held the product (a retry).
    pub created: bool,
}

/// What an order reservation decided. Every outcome but `Reserved` changed
/// nothing (but expiries) and lists every item at fault.
#[derive(Debug, Clone)]
pub enum ReserveOrderOutcome {
    /// Every item is held, in product id order.
    Reserved(Vec<ReservedItem>),
    /// The order already holds some products in other quantities.
    Conflicting(Vec<ItemConflict>),
    /// Some products do not exist.
    ProductsNotFound(Vec<String>),
    /// Some products have not enough available stock.
    Insufficient(Vec<Shortage>),
}

/// What a release decided. Kept under a request key as JSON: the variant
/// and field names are a stored format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReleaseOutcome {
    /// Stock was given back.
    Released {
        /// The reservation afterwards.
        reservation: Reservation,
        /// How much was given back.
        released: i32,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The reservation was no longer active; nothing changed.
    NotActive {
        /// The reservation as it stands.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The release asked for more than the reservation holds; nothing changed.
    ExceedsHeld {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// No reservation of this product for this order; nothing changed.
    NotFound,
}

/// What a commit decided. Kept under a request key as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// Stock was committed: total and reserved both dropped by `committed`.
    Committed {
        /// The reservation afterwards (still active if it holds a remainder).
        reservation: Reservation,
        /// How much was committed.
        committed: i32,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The reservation was already committed; nothing changed.
    AlreadyCommitted {
        /// The reservation as it stands.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The reservation was released or expired; nothing changed.
    NotActive {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// The commit asked for more than the reservation holds; nothing changed.
    ExceedsHeld {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// No reservation of this product for this order; nothing changed.
    NotFound,
}

/// One reservation given back by a release of a whole order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleasedHold {
    /// The reservation afterwards (released).
    pub reservation: Reservation,
    /// How much was given back.
    pub released: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
}

/// What a release of a whole order decided. Kept under a request key as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReleaseOrderOutcome {
    /// Every active reservation of the order was released (possibly none),
    /// in product order.
    Released(Vec<ReleasedHold>),
    /// The order has no reservation at all; nothing changed.
    NotFound,
}

/// What a stock update decided. Kept under a request key as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UpdateOutcome {
    /// The update was applied.
    Applied {
        /// What was decided.
        plan: UpdatePlan,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The product's version is not the expected one; nothing changed.
    VersionMismatch {
        /// The product's version (0: it does not exist).
        current: i64,
    },
    /// The rules refused the update against the current stock; nothing
    /// changed. Never kept under a request key, so never serialized.
    #[serde(skip)]
    Rejected(Error),
}

/// The outcome of every command of a work and the rows to write.
#[derive(Debug, Clone)]
pub struct Planned {
    /// One per command, in order.
    pub outcomes: Vec<Outcome>,
    /// What the store writes.
    pub changes: Changes,
}

/// Why a decision could not be made (yet).
#[derive(Debug)]
pub enum PlanError {
    /// Rows nobody has read yet are needed.
    Missing(Box<Needs>),
    /// The rows contradict the invariants (a reservation holding more than
    /// its product's reserved quantity, a kept result that cannot be read):
    /// a bug or a damaged database. The work fails with nothing written.
    Broken(String),
}

/// Everything the store has read for a work so far.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Stock rows read, by product; `None`: the product does not exist.
    stocks: BTreeMap<String, Option<StockLevel>>,
    /// Reservations read, by id.
    reservations: BTreeMap<String, Reservation>,
    /// Orders whose every reservation was read.
    orders: BTreeSet<String>,
    /// `(order, product)` pairs whose reservation was looked up.
    holds: BTreeSet<(String, String)>,
    /// Products whose due reservations were read.
    due_of: BTreeSet<String>,
    /// Whether due reservations of any product were read.
    due_any: bool,
    /// Request keys looked up; `None`: not kept.
    keys: BTreeMap<String, Option<KeptRequest>>,
}

impl Known {
    /// Adds what the store found for `needs`.
    pub fn absorb(&mut self, needs: &Needs, rows: Rows) {
        for product in &needs.stocks {
            self.stocks.entry(product.clone()).or_insert(None);
        }
        for stock in rows.stocks {
            self.stocks.insert(stock.product_id.clone(), Some(stock));
        }
        for reservation in rows.reservations {
            self.reservations
                .entry(reservation.id.clone())
                .or_insert(reservation);
        }
        self.orders.extend(needs.orders.iter().cloned());
        self.holds.extend(needs.holds.iter().cloned());
        self.due_of.extend(needs.due_of.iter().cloned());
        self.due_any |= needs.due_any.is_some();
        for key in &needs.keys {
            self.keys.entry(key.clone()).or_insert(None);
        }
        for kept in rows.keys {
            self.keys.insert(kept.request_id.clone(), Some(kept));
        }
    }
}

/// The rows of a work as its commands have left them so far, and what they
/// wrote. Decisions read and change rows only through it.
#[derive(Debug, Clone)]
pub struct State {
    /// The work's time.
    now: DateTime<Utc>,
    /// The rows as read; with `known.stocks` and `known.reservations`
    /// changed by the commands planned so far.
    rows: Known,
    /// Ids of the reservations the work created.
    created: BTreeSet<String>,
    /// History entries added, in order.
    history: Vec<HistoryEntry>,
    /// The events of the changes made, in order.
    events: Vec<StockEvent>,
    /// Request keys kept, in order.
    kept: Vec<KeptRequest>,
    /// Products whose alternatives are replaced, with the new list.
    alternatives: Vec<(String, Vec<String>)>,
    /// How many writes were made, to tell a decision that wrote before it
    /// had read everything.
    writes: usize,
}

impl State {
    /// The state of a work at `now` over the rows read.
    fn new(now: DateTime<Utc>, known: &Known) -> Self {
        Self {
            now,
            rows: known.clone(),
            created: BTreeSet::new(),
            history: Vec::new(),
            events: Vec::new(),
            kept: Vec::new(),
            alternatives: Vec::new(),
            writes: 0,
        }
    }

    /// The work's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Fails with what of `needs` has not been read yet, if anything: a
    /// decision states up front what it will read, so that one round of
    /// reads serves it.
    pub fn require(&self, needs: Needs) -> Result<(), PlanError> {
        let missing = Needs {
            orders: needs
                .orders
                .into_iter()
                .filter(|o| !self.rows.orders.contains(o))
                .collect(),
            holds: needs
                .holds
                .into_iter()
                .filter(|(o, p)| {
                    !self.rows.orders.contains(o)
                        && !self.rows.holds.contains(&(o.clone(), p.clone()))
                })
                .collect(),
            stocks: needs
                .stocks
                .into_iter()
                .filter(|p| !self.rows.stocks.contains_key(p))
                .collect(),
            due_of: needs
                .due_of
                .into_iter()
                .filter(|p| !self.rows.due_of.contains(p))
                .collect(),
            due_any: needs.due_any.filter(|_| !self.rows.due_any),
            keys: needs
                .keys
                .into_iter()
                .filter(|k| !self.rows.keys.contains_key(k))
                .collect(),
        };
        if missing.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Missing(Box::new(missing)))
        }
    }

    /// A product's stock (`None`: it does not exist).
    pub fn stock(&self, product_id: &str) -> Result<Option<&StockLevel>, PlanError> {
        match self.rows.stocks.get(product_id) {
            Some(stock) => Ok(stock.as_ref()),
            None => Err(missing(|n| {
                n.stocks.insert(product_id.to_owned());
            })),
        }
    }

    /// The stock of a product that must exist because a reservation holds it.
    pub fn held_stock(&self, product_id: &str) -> Result<StockLevel, PlanError> {
        self.stock(product_id)?.cloned().ok_or_else(|| {
            PlanError::Broken(format!(
                "product {product_id:?} has reservations but no stock row"
            ))
        })
    }

    /// The order's reservation of the product, if any.
    pub fn hold(
        &self,
        order_id: &str,
        product_id: &str,
    ) -> Result<Option<&Reservation>, PlanError> {
        let pair = (order_id.to_owned(), product_id.to_owned());
        if !self.rows.orders.contains(order_id) && !self.rows.holds.contains(&pair) {
            return Err(missing(|n| {
                n.holds.insert(pair);
            }));
        }
        Ok(self
            .rows
            .reservations
            .values()
            .find(|r| r.order_id == order_id && r.product_id == product_id))
    }

    /// Every reservation of an order, by product id.
    pub fn order(&self, order_id: &str) -> Result<Vec<&Reservation>, PlanError> {
        if !self.rows.orders.contains(order_id) {
            return Err(missing(|n| {
                n.orders.insert(order_id.to_owned());
            }));
        }
        let mut reservations: Vec<&Reservation> = self
            .rows
            .reservations
            .values()
            .filter(|r| r.order_id == order_id)
            .collect();
        reservations.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        Ok(reservations)
    }

    /// The active reservations of a product whose time has passed, earliest
    /// first.
    pub fn due_of(&self, product_id: &str) -> Result<Vec<Reservation>, PlanError> {
        if !self.rows.due_of.contains(product_id) {
            return Err(missing(|n| {
                n.due_of.insert(product_id.to_owned());
            }));
        }
        Ok(self.due(|r| r.product_id == product_id))
    }

    /// Every active reservation read whose time has passed, by product then
    /// expiry (the order inventory rows are changed in).
    pub fn due_any(&self, limit: u32) -> Result<Vec<Reservation>, PlanError> {
        if !self.rows.due_any {
            return Err(missing(|n| n.due_any = Some(limit)));
        }
        let mut due = self.due(|_| true);
        due.sort_by(|a, b| {
            (a.product_id.as_str(), a.expires_at, a.id.as_str()).cmp(&(
                b.product_id.as_str(),
                b.expires_at,
                b.id.as_str(),
            ))
        });
        Ok(due)
    }

    fn due(&self, of: impl Fn(&Reservation) -> bool) -> Vec<Reservation> {
        let mut due: Vec<Reservation> = self
            .rows
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Active && r.expires_at <= self.now && of(r))
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.expires_at, a.id.as_str()).cmp(&(b.expires_at, b.id.as_str())));
        due
    }

    /// The result kept for a request key, if any.
    pub fn kept(&self, request_id: &str) -> Result<Option<&KeptRequest>, PlanError> {
        match self.rows.keys.get(request_id) {
            Some(kept) => Ok(kept.as_ref()),
            None => Err(missing(|n| {
                n.keys.insert(request_id.to_owned());
            })),
        }
    }

    /// Stores a product's stock as it is after a change.
    pub fn put_stock(&mut self, stock: StockLevel) {
        self.writes += 1;
        self.rows
            .stocks
            .insert(stock.product_id.clone(), Some(stock));
    }

    /// Stores a reservation as it is after a change, or a new one.
    pub fn put_reservation(&mut self, reservation: Reservation, created: bool) {
        self.writes += 1;
        if created {
            self.created.insert(reservation.id.clone());
        }
        self.rows
            .reservations
            .insert(reservation.id.clone(), reservation);
    }

    /// Adds the history entry of a change of stock, and its event: what
    /// happened (`kind`) and `stock` as the change left it.
    /// The change's stock-state events (low, out of, back in stock) follow
    /// it, decided by [`super::rules::stock_state_changes`] from the
    /// available quantity before it (after, less the entry's change).
    pub fn record(&mut self, kind: ChangeKind, stock: &StockLevel, entry: HistoryEntry) {
        self.writes += 1;
        let after = stock.available_quantity();
        let before = after - entry.quantity_change;
        let states = super::rules::stock_state_changes(before, after, stock.low_stock_threshold);
        for kind in std::iter::once(kind).chain(states) {
            self.events.push(StockEvent {
                kind,
                order_id: entry.order_id.clone(),
                quantity_change: entry.quantity_change,
                stock: stock.clone(),
                created_at: entry.created_at,
            });
        }
        self.history.push(entry);
    }

    /// Replaces a product's alternatives.
    pub fn put_alternatives(&mut self, product_id: &str, alternatives: Vec<String>) {
        self.writes += 1;
        self.alternatives.retain(|(p, _)| p != product_id);
        self.alternatives
            .push((product_id.to_owned(), alternatives));
    }

    /// Keeps a request's result under its key.
    pub fn keep(&mut self, kept: KeptRequest) {
        self.writes += 1;
        self.rows
            .keys
            .insert(kept.request_id.clone(), Some(kept.clone()));
        self.kept.push(kept);
    }

    /// What the work writes: every row that differs from what was read.
    fn changes(self, known: &Known) -> Changes {
        let stocks = self
            .rows
            .stocks
            .into_iter()
            .filter_map(|(product, stock)| {
                let stock = stock?;
                match known.stocks.get(&product) {
                    Some(Some(read)) if *read == stock => None,
                    Some(Some(read)) => Some(StockWrite {
                        read_version: Some(read.version),
                        stock,
                    }),
                    _ => Some(StockWrite {
                        stock,
                        read_version: None,
                    }),
                }
            })
            .collect();
        let (new_reservations, changed): (Vec<Reservation>, Vec<Reservation>) = self
            .rows
            .reservations
            .into_values()
            .filter(|r| known.reservations.get(&r.id) != Some(r))
            .partition(|r| self.created.contains(&r.id));
        Changes {
            stocks,
            new_reservations,
            reservations: changed,
            history: self.history,
            events: self.events,
            keys: self.kept,
            alternatives: self.alternatives,
            now: self.now,
        }
    }
}

/// A [`PlanError::Missing`] of what `add` puts in.
fn missing(add: impl FnOnce(&mut Needs)) -> PlanError {
    let mut needs = Needs::default();
    add(&mut needs);
    PlanError::Missing(Box::new(needs))
}

/// Plans `work` against the rows in `known`: every command's outcome and the
/// rows to write, or everything still missing (of all commands at once).
pub fn plan(work: &Work, known: &Known) -> Result<Planned, PlanError> {
    let mut state = State::new(work.now, known);
    let mut outcomes = Vec::with_capacity(work.commands.len());
    let mut needs = Needs::default();
    for (i, command) in work.commands.iter().enumerate() {
        let writes = state.writes;
        let recorded = state.history.len();
        match super::decide::decide(&mut state, command) {
            Ok(outcome) => {
                if let Some(Some(actor)) = work.actors.get(i) {
                    for entry in &mut state.history[recorded..] {
                        if let Value::Object(metadata) = &mut entry.metadata {
                            metadata.insert("actor".to_owned(), Value::from(actor.as_ref()));
                        }
                    }
                }
                outcomes.push(outcome);
            }
            Err(PlanError::Missing(more)) => {
                if state.writes != writes {
                    return Err(PlanError::Broken(format!(
                        "the {} decision wrote before it had read everything",
                        command.name()
                    )));
                }
                needs.merge(*more);
            }
            Err(broken) => return Err(broken),
        }
    }
    if !needs.is_empty() {
        return Err(PlanError::Missing(Box::new(needs)));
    }
    Ok(Planned {
        outcomes,
        changes: state.changes(known),
    })
}

/// Plans `work`, reading what it needs with `load` (a store's reads inside
/// its transaction), until nothing is missing.
pub fn plan_with(
    work: &Work,
    mut load: impl FnMut(&Needs) -> StoreResult<Rows>,
) -> StoreResult<Planned> {
    let mut known = Known::default();
    for _ in 0..MAX_ROUNDS {
        match plan(work, &known) {
            Ok(planned) => return Ok(planned),
            Err(PlanError::Missing(needs)) => {
                let rows = load(&needs)?;
                known.absorb(&needs, rows);
            }
            Err(PlanError::Broken(reason)) => return Err(StoreError::Internal(reason)),
        }
    }
    Err(unsettled())
}

/// The reads of one round, as an asynchronous store makes them.
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = StoreResult<Rows>> + Send + 'a>>;

/// [`plan_with`] for an asynchronous store: `load` reads `needs` on `conn`
/// (a connection inside its transaction) as of the work's time.
pub async fn plan_with_async<C: Send>(
    work: &Work,
    conn: &mut C,
    load: for<'a> fn(&'a mut C, &'a Needs, DateTime<Utc>) -> LoadFuture<'a>,
) -> StoreResult<Planned> {
    let mut known = Known::default();
    for _ in 0..MAX_ROUNDS {
        match plan(work, &known) {
            Ok(planned) => return Ok(planned),
            Err(PlanError::Missing(needs)) => {
                let rows = load(conn, &needs, work.now).await?;
                known.absorb(&needs, rows);
            }
            Err(PlanError::Broken(reason)) => return Err(StoreError::Internal(reason)),
        }
    }
    Err(unsettled())
}

fn unsettled() -> StoreError {
    StoreError::Internal(format!(
        "a unit of work still needed rows after {MAX_ROUNDS} rounds of reads"
    ))
}
