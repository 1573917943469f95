//! Every decision that changes stock, one function each: reserve, reserve an
//! order, release, commit, release an order, update, expire, and the replay
//! or refusal of a request key. Each reads the rows it needs from a
//! [`State`] (failing with [`PlanError::Missing`] for rows not read yet, before
//! it writes anything), decides, and writes its changes and history entries
//! back into the state. They know no SQL: every backend, and a batch of
//! several commands, runs these same functions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::model::{
    ChangeKind, HistoryEntry, ItemConflict, OperationType, Reservation, ReservationStatus,
    Shortage, StockChange, StockLevel, new_id,
};
use super::port::{KeptRequest, Needs};
use super::rules::{UpdatePlan, plan_update};
use super::work::{
    AlternativesOutcome, AlternativesUpdate, Command, CommitOutcome, CommitRequest, Keyed,
    NewOrderReservation, NewReservation, OrderRelease, Outcome, PlanError, ReleaseOrderOutcome,
    ReleaseOutcome, ReleaseRequest, ReleasedHold, RequestKey, ReserveOrderOutcome, ReserveOutcome,
    ReservedItem, State, StockUpdate, ThresholdUpdate, UpdateOutcome,
};

type Decided<T> = Result<T, PlanError>;

/// Decides one command against `state`.
pub fn decide(state: &mut State, command: &Command) -> Decided<Outcome> {
    state.require(first_needs(command))?;
    Ok(match command {
        Command::Reserve(request) => Outcome::Reserve(reserve(state, request)?),
        Command::ReserveOrder(request) => Outcome::ReserveOrder(reserve_order(state, request)?),
        Command::Release(request) => {
            Outcome::Release(keyed(state, request.key.as_ref(), |s| release(s, request))?)
        }
        Command::Commit(request) => {
            Outcome::Commit(keyed(state, request.key.as_ref(), |s| commit(s, request))?)
        }
        Command::ReleaseOrder(request) => {
            Outcome::ReleaseOrder(keyed(state, request.key.as_ref(), |s| {
                release_order(s, request)
            })?)
        }
        Command::Update(request) => {
            Outcome::Update(keyed(state, request.key.as_ref(), |s| update(s, request))?)
        }
        Command::SetThreshold(request) => Outcome::SetThreshold(set_threshold(state, request)?),
        Command::SetAlternatives(request) => {
            Outcome::SetAlternatives(set_alternatives(state, request)?)
        }
        Command::Expire { limit } => Outcome::Expire(expire_due(state, *limit)?),
    })
}

/// Sets or clears a product's low-stock threshold. It changes no quantity,
/// so it records no history and raises no event; later changes that cross
/// it do.
pub fn set_threshold(state: &mut State, request: &ThresholdUpdate) -> Decided<Option<StockLevel>> {
    let Some(mut stock) = state.stock(&request.product_id)?.cloned() else {
        return Ok(None);
    };
    if stock.low_stock_threshold != request.threshold {
        stock.low_stock_threshold = request.threshold;
        stock.updated_at = touched(&stock, state.now());
        state.put_stock(stock.clone());
    }
    Ok(Some(stock))
}

/// Replaces a product's alternatives, if the product and every alternative
/// exist (the rows are read locked, so none can vanish before the commit).
pub fn set_alternatives(
    state: &mut State,
    request: &AlternativesUpdate,
) -> Decided<AlternativesOutcome> {
    if state.stock(&request.product_id)?.is_none() {
        return Ok(AlternativesOutcome::ProductNotFound);
    }
    let mut unknown = Vec::new();
    for alternative in &request.alternatives {
        if state.stock(alternative)?.is_none() {
            unknown.push(alternative.clone());
        }
    }
    if !unknown.is_empty() {
        return Ok(AlternativesOutcome::UnknownAlternatives(unknown));
    }
    state.put_alternatives(&request.product_id, request.alternatives.clone());
    Ok(AlternativesOutcome::Set)
}

/// What a command reads whatever it finds, asked for up front so that one
/// round of reads serves it (and every command of a batch).
fn first_needs(command: &Command) -> Needs {
    let pair = |order: &str, product: &str| (order.to_owned(), product.to_owned());
    let key = |key: &Option<RequestKey>| key.iter().map(|k| k.request_id.clone()).collect();
    match command {
        Command::Reserve(r) => Needs {
            holds: [pair(&r.order_id, &r.product_id)].into(),
            stocks: [r.product_id.clone()].into(),
            ..Needs::default()
        },
        Command::ReserveOrder(r) => Needs {
            orders: [r.order_id.clone()].into(),
            stocks: r.items.iter().map(|i| i.product_id.clone()).collect(),
            ..Needs::default()
        },
        Command::Release(ReleaseRequest {
            product_id,
            order_id,
            key: k,
            ..
        })
        | Command::Commit(CommitRequest {
            product_id,
            order_id,
            key: k,
            ..
        }) => Needs {
            holds: [pair(order_id, product_id)].into(),
            stocks: [product_id.clone()].into(),
            keys: key(k),
            ..Needs::default()
        },
        Command::ReleaseOrder(r) => Needs {
            orders: [r.order_id.clone()].into(),
            keys: key(&r.key),
            ..Needs::default()
        },
        Command::SetThreshold(r) => Needs {
            stocks: [r.product_id.clone()].into(),
            ..Needs::default()
        },
        Command::SetAlternatives(r) => Needs {
            stocks: std::iter::once(&r.product_id)
                .chain(&r.alternatives)
                .cloned()
                .collect(),
            ..Needs::default()
        },
        Command::Update(r) => Needs {
            stocks: [r.product_id.clone()].into(),
            keys: key(&r.key),
            ..Needs::default()
        },
        Command::Expire { limit } => Needs {
            due_any: Some(*limit),
            ..Needs::default()
        },
    }
}

/// When a stock row changed at `now` was last changed: `now`, or just after
/// the row's previous change if that is later (the clocks of two replicas
/// need not agree). A row's `updated_at` therefore moves forward with every
/// change, and of two figures of one product the later `updated_at` is the
/// newer one (what the stock cache relies on).
pub fn touched(stock: &StockLevel, now: DateTime<Utc>) -> DateTime<Utc> {
    now.max(stock.updated_at + chrono::Duration::microseconds(1))
}

/// Needs built by `add`.
fn needs(add: impl FnOnce(&mut Needs)) -> Needs {
    let mut needs = Needs::default();
    add(&mut needs);
    needs
}

/// A write outcome that can be kept under a request key.
pub trait KeyedOutcome: serde::Serialize + serde::de::DeserializeOwned {
    /// Whether the caller is answered with success (even one that changed
    /// nothing, such as releasing an expired reservation); only then is the
    /// outcome kept. A refusal changed nothing, and its retry simply runs
    /// again.
    fn succeeded(&self) -> bool;
}

impl KeyedOutcome for ReleaseOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Released { .. } | Self::NotActive { .. })
    }
}

impl KeyedOutcome for CommitOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Committed { .. } | Self::AlreadyCommitted { .. })
    }
}

impl KeyedOutcome for ReleaseOrderOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Released(_))
    }
}

impl KeyedOutcome for UpdateOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }
}

/// Runs `write` under the client's request key, if any. A key kept before
/// with the same method and fields answers with the result kept then and
/// writes nothing; with anything else it is [`Keyed::Reused`]. A new key runs
/// the write and, when it succeeded, keeps its result in the same work. Two
/// concurrent first uses of one key both run; the second to commit fails on
/// the key's primary key, and planned again it finds the first one's result.
pub fn keyed<T: KeyedOutcome>(
    state: &mut State,
    key: Option<&RequestKey>,
    write: impl FnOnce(&mut State) -> Decided<T>,
) -> Decided<Keyed<T>> {
    let Some(key) = key else {
        return write(state).map(Keyed::Fresh);
    };
    if let Some(kept) = state.kept(&key.request_id)? {
        if kept.method != key.method || kept.fields != key.fields {
            return Ok(Keyed::Reused {
                method: kept.method.clone(),
                fields: kept.fields.clone(),
            });
        }
        return serde_json::from_value(kept.response.clone())
            .map(Keyed::Replayed)
            .map_err(|e| {
                PlanError::Broken(format!(
                    "the result kept for request_id {:?} is unreadable: {e}",
                    key.request_id
                ))
            });
    }
    let outcome = write(state)?;
    if outcome.succeeded() {
        let response = serde_json::to_value(&outcome).map_err(|e| {
            PlanError::Broken(format!("cannot keep the result of a keyed write: {e}"))
        })?;
        state.keep(KeptRequest {
            request_id: key.request_id.clone(),
            method: key.method.to_owned(),
            fields: key.fields.clone(),
            response,
            created_at: state.now(),
        });
    }
    Ok(Keyed::Fresh(outcome))
}

/// Holds stock of one product for an order. An order that already holds the
/// product gets its reservation back as it stands. When the product is
/// short, its reservations already past their time are expired first, and
/// the reservation tried again.
pub fn reserve(state: &mut State, request: &NewReservation) -> Decided<ReserveOutcome> {
    let (order, product) = (&request.order_id, &request.product_id);
    if let Some(reservation) = state.hold(order, product)?.cloned() {
        let stock = state.held_stock(product)?;
        return Ok(ReserveOutcome::Existing { reservation, stock });
    }
    let Some(mut stock) = state.stock(product)?.cloned() else {
        return Ok(ReserveOutcome::ProductNotFound);
    };
    if stock.available_quantity() < request.quantity {
        for due in state.due_of(product)? {
            expire(state, due)?;
        }
        stock = state.held_stock(product)?;
        if stock.available_quantity() < request.quantity {
            return Ok(ReserveOutcome::InsufficientStock { stock });
        }
    }
    let (reservation, stock) = hold(
        state,
        stock,
        &request.id,
        order,
        request.quantity,
        request.timeout,
    );
    Ok(ReserveOutcome::Created { reservation, stock })
}

/// Holds `quantity` of `stock` (which has that much available) for an
/// order: the reservation, the stock afterwards, the history entry.
fn hold(
    state: &mut State,
    mut stock: StockLevel,
    id: &str,
    order_id: &str,
    quantity: i32,
    timeout: chrono::Duration,
) -> (Reservation, StockLevel) {
    let now = state.now();
    let expires_at = now + timeout;
    stock.reserved_quantity += quantity;
    stock.updated_at = touched(&stock, now);
    let reservation = Reservation {
        id: id.to_owned(),
        product_id: stock.product_id.clone(),
        order_id: order_id.to_owned(),
        quantity,
        released_quantity: 0,
        committed_quantity: 0,
        status: ReservationStatus::Active,
        expires_at,
        created_at: now,
    };
    state.put_stock(stock.clone());
    state.put_reservation(reservation.clone(), true);
    state.record(
        ChangeKind::Reserve,
        &stock,
        entry(
            &stock.product_id,
            OperationType::Reserve,
            -quantity,
            Some(order_id),
            now,
            json!({
                "reservation_id": id,
                "quantity": quantity,
                "expires_at": expires_at.to_rfc3339(),
                "reserved_quantity": stock.reserved_quantity,
                "available_quantity": stock.available_quantity(),
            }),
        ),
    );
    (reservation, stock)
}

/// Holds stock of several products for one order, all or nothing. Products
/// the order already holds in the same quantity are kept as they are;
/// another quantity is a conflict. The others are reserved only if every one
/// exists and has enough available; otherwise the outcome lists every
/// product at fault (missing products first). Short products' reservations
/// already past their time are expired before refusing.
pub fn reserve_order(
    state: &mut State,
    request: &NewOrderReservation,
) -> Decided<ReserveOrderOutcome> {
    let mut existing: BTreeMap<String, Reservation> = state
        .order(&request.order_id)?
        .into_iter()
        .map(|r| (r.product_id.clone(), r.clone()))
        .collect();
    let mut kept = Vec::new();
    let mut needed = Vec::new();
    let mut conflicts = Vec::new();
    for item in &request.items {
        match existing.remove(&item.product_id) {
            None => needed.push(item),
            Some(reservation) if reservation.quantity == item.quantity => kept.push(reservation),
            Some(reservation) => conflicts.push(ItemConflict {
                product_id: item.product_id.clone(),
                existing_quantity: reservation.quantity,
                requested: item.quantity,
            }),
        }
    }
    if !conflicts.is_empty() {
        return Ok(ReserveOrderOutcome::Conflicting(conflicts));
    }
    let missing: Vec<String> = needed
        .iter()
        .filter(|item| matches!(state.stock(&item.product_id), Ok(None)))
        .map(|item| item.product_id.clone())
        .collect();
    if !missing.is_empty() {
        return Ok(ReserveOrderOutcome::ProductsNotFound(missing));
    }
    let shortages = |state: &State| -> Decided<Vec<Shortage>> {
        let mut short = Vec::new();
        for item in &needed {
            let available = state.held_stock(&item.product_id)?.available_quantity();
            if available < item.quantity {
                short.push(Shortage {
                    product_id: item.product_id.clone(),
                    requested: item.quantity,
                    available,
                });
            }
        }
        Ok(short)
    };
    let short = shortages(state)?;
    if !short.is_empty() {
        state.require(needs(|n| {
            n.due_of.extend(short.iter().map(|s| s.product_id.clone()));
        }))?;
        for product in short.iter().map(|s| &s.product_id) {
            for due in state.due_of(product)? {
                expire(state, due)?;
            }
        }
        let short = shortages(state)?;
        if !short.is_empty() {
            return Ok(ReserveOrderOutcome::Insufficient(short));
        }
    }
    let mut reserved = Vec::with_capacity(request.items.len());
    for reservation in kept {
        let stock = state.held_stock(&reservation.product_id)?;
        reserved.push(ReservedItem {
            reservation,
            stock,
            created: false,
        });
    }
    for item in needed {
        let stock = state.held_stock(&item.product_id)?;
        let (reservation, stock) = hold(
            state,
            stock,
            &item.id,
            &request.order_id,
            item.quantity,
            request.timeout,
        );
        reserved.push(ReservedItem {
            reservation,
            stock,
            created: true,
        });
    }
    reserved.sort_by(|a, b| a.reservation.product_id.cmp(&b.reservation.product_id));
    Ok(ReserveOrderOutcome::Reserved(reserved))
}

/// What an active reservation still holds after giving back or committing
/// `requested` (`None`: all of it): the amount, or `None` when more than it
/// holds was asked for.
fn take_from_hold(reservation: &Reservation, requested: Option<i32>) -> Option<i32> {
    let held = reservation.held_quantity();
    let amount = requested.unwrap_or(held);
    (amount <= held).then_some(amount)
}

/// Gives back `quantity` (all when `None`) of what an order's reservation of
/// a product holds. A reservation no longer active is answered as it
/// stands; once nothing is left to hold, the reservation is released.
pub fn release(state: &mut State, request: &ReleaseRequest) -> Decided<ReleaseOutcome> {
    let (order, product) = (&request.order_id, &request.product_id);
    let Some(mut reservation) = state.hold(order, product)?.cloned() else {
        return Ok(ReleaseOutcome::NotFound);
    };
    let stock = state.held_stock(product)?;
    if reservation.status != ReservationStatus::Active {
        return Ok(ReleaseOutcome::NotActive { reservation, stock });
    }
    let Some(amount) = take_from_hold(&reservation, request.quantity) else {
        return Ok(ReleaseOutcome::ExceedsHeld { reservation });
    };
    reservation.released_quantity += amount;
    // Nothing left to hold: a remainder released after a partial commit
    // resolves the reservation as released.
    if reservation.held_quantity() == 0 {
        reservation.status = ReservationStatus::Released;
    }
    let stock = give_back(state, stock, &reservation, amount)?;
    let now = state.now();
    state.record(
        ChangeKind::Release,
        &stock,
        entry(
            product,
            OperationType::Release,
            amount,
            Some(order),
            now,
            json!({
                "reservation_id": reservation.id,
                "quantity": amount,
                "reason": "released",
                "held_quantity": reservation.held_quantity(),
                "reserved_quantity": stock.reserved_quantity,
                "available_quantity": stock.available_quantity(),
            }),
        ),
    );
    state.put_reservation(reservation.clone(), false);
    Ok(ReleaseOutcome::Released {
        reservation,
        released: amount,
        stock,
    })
}

/// Moves `amount` out of `stock`'s reserved quantity for `reservation`.
fn give_back(
    state: &mut State,
    mut stock: StockLevel,
    reservation: &Reservation,
    amount: i32,
) -> Decided<StockLevel> {
    if stock.reserved_quantity < amount {
        return Err(PlanError::Broken(format!(
            "reserved quantity of {:?} is below its active reservation {}",
            stock.product_id, reservation.id
        )));
    }
    stock.reserved_quantity -= amount;
    stock.updated_at = touched(&stock, state.now());
    state.put_stock(stock.clone());
    Ok(stock)
}

/// Commits `quantity` (all when `None`) of what an order's reservation of a
/// product holds: it leaves the stock on hand and the hold at once, so
/// available is unchanged, and the product's version moves. The remainder of
/// a partial commit stays held. Committing a committed reservation again is
/// answered as it stands; a released or expired one cannot be committed.
pub fn commit(state: &mut State, request: &CommitRequest) -> Decided<CommitOutcome> {
    let (order, product) = (&request.order_id, &request.product_id);
    let Some(mut reservation) = state.hold(order, product)?.cloned() else {
        return Ok(CommitOutcome::NotFound);
    };
    let mut stock = state.held_stock(product)?;
    match reservation.status {
        ReservationStatus::Active => {}
        ReservationStatus::Committed => {
            return Ok(CommitOutcome::AlreadyCommitted { reservation, stock });
        }
        ReservationStatus::Released | ReservationStatus::Expired => {
            return Ok(CommitOutcome::NotActive { reservation });
        }
    }
    let Some(amount) = take_from_hold(&reservation, request.quantity) else {
        return Ok(CommitOutcome::ExceedsHeld { reservation });
    };
    reservation.committed_quantity += amount;
    if reservation.held_quantity() == 0 {
        reservation.status = ReservationStatus::Committed;
    }
    if stock.reserved_quantity < amount {
        return Err(PlanError::Broken(format!(
            "reserved quantity of {product:?} is below its active reservation {}",
            reservation.id
        )));
    }
    let now = state.now();
    stock.total_quantity -= amount;
    stock.reserved_quantity -= amount;
    stock.version += 1;
    stock.updated_at = touched(&stock, now);
    state.put_stock(stock.clone());
    state.put_reservation(reservation.clone(), false);
    state.record(
        ChangeKind::Commit,
        &stock,
        entry(
            product,
            OperationType::Commit,
            0,
            Some(order),
            now,
            json!({
                "reservation_id": reservation.id,
                "quantity": amount,
                "reason": "committed",
                "held_quantity": reservation.held_quantity(),
                "current_quantity": stock.total_quantity,
                "reserved_quantity": stock.reserved_quantity,
                "available_quantity": stock.available_quantity(),
            }),
        ),
    );
    Ok(CommitOutcome::Committed {
        reservation,
        committed: amount,
        stock,
    })
}

/// Releases everything every active reservation of an order holds, product
/// by product. An order with nothing active is answered with an empty list;
/// an order that never reserved anything is not found.
pub fn release_order(state: &mut State, request: &OrderRelease) -> Decided<ReleaseOrderOutcome> {
    let reservations: Vec<Reservation> = state
        .order(&request.order_id)?
        .into_iter()
        .cloned()
        .collect();
    if reservations.is_empty() {
        return Ok(ReleaseOrderOutcome::NotFound);
    }
    let active: Vec<Reservation> = reservations
        .into_iter()
        .filter(|r| r.status == ReservationStatus::Active)
        .collect();
    state.require(needs(|n| {
        n.stocks.extend(active.iter().map(|r| r.product_id.clone()));
    }))?;
    let mut released = Vec::with_capacity(active.len());
    for mut reservation in active {
        let amount = reservation.held_quantity();
        reservation.released_quantity += amount;
        reservation.status = ReservationStatus::Released;
        let stock = state.held_stock(&reservation.product_id)?;
        let stock = give_back(state, stock, &reservation, amount)?;
        let now = state.now();
        state.record(
            ChangeKind::Release,
            &stock,
            entry(
                &reservation.product_id,
                OperationType::Release,
                amount,
                Some(&reservation.order_id),
                now,
                json!({
                    "reservation_id": reservation.id,
                    "quantity": amount,
                    "reason": "released",
                    "held_quantity": 0,
                    "reserved_quantity": stock.reserved_quantity,
                    "available_quantity": stock.available_quantity(),
                }),
            ),
        );
        state.put_reservation(reservation.clone(), false);
        released.push(ReleasedHold {
            reservation,
            released: amount,
            stock,
        });
    }
    Ok(ReleaseOrderOutcome::Released(released))
}

/// Sets, adds to or subtracts from a product's stock on hand, as
/// [`plan_update`] decides against the stock as it is, and only at the
/// expected version when one is given (0: the product must not exist yet).
/// The product's row is locked, so concurrent updates wait for each other
/// and none is refused for it.
pub fn update(state: &mut State, request: &StockUpdate) -> Decided<UpdateOutcome> {
    let product = &request.product_id;
    let current = state.stock(product)?.cloned();
    let current_version = current.as_ref().map_or(0, |stock| stock.version);
    if let Some(expected) = request.expected_version
        && expected != current_version
    {
        return Ok(UpdateOutcome::VersionMismatch {
            current: current_version,
        });
    }
    let plan = match plan_update(product, current.as_ref(), request.change) {
        Ok(plan) => plan,
        Err(rejection) => return Ok(UpdateOutcome::Rejected(rejection)),
    };
    let now = state.now();
    let stock = match current {
        Some(mut stock) => {
            stock.total_quantity = plan.new_total;
            stock.version += 1;
            stock.updated_at = touched(&stock, now);
            stock
        }
        None => StockLevel {
            product_id: product.clone(),
            total_quantity: plan.new_total,
            reserved_quantity: 0,
            updated_at: now,
            version: 1,
            low_stock_threshold: None,
        },
    };
    state.put_stock(stock.clone());
    state.record(
        ChangeKind::Update,
        &stock,
        entry(
            product,
            OperationType::Update,
            plan.delta(),
            None,
            now,
            update_metadata(request.change, &plan, stock.version),
        ),
    );
    Ok(UpdateOutcome::Applied { plan, stock })
}

/// The history metadata of a change of stock on hand.
fn update_metadata(change: StockChange, plan: &UpdatePlan, version: i64) -> Value {
    json!({
        "operation": change.name(),
        "quantity": change.amount(),
        "previous_quantity": plan.previous_total,
        "current_quantity": plan.new_total,
        "created": plan.creates_product,
        "version": version,
    })
}

/// Expires up to `limit` reservations whose timeout has passed (at most
/// those the store read: it reads `limit`), product by product.
pub fn expire_due(state: &mut State, limit: u32) -> Decided<Vec<Reservation>> {
    let due = state.due_any(limit)?;
    state.require(needs(|n| {
        n.stocks.extend(due.iter().map(|r| r.product_id.clone()));
    }))?;
    let mut expired = Vec::with_capacity(due.len());
    for reservation in due {
        expired.push(expire(state, reservation)?);
    }
    Ok(expired)
}

/// Expires one active reservation past its time: what it holds is available
/// again, and the history says why.
fn expire(state: &mut State, mut reservation: Reservation) -> Decided<Reservation> {
    let held = reservation.held_quantity();
    reservation.status = ReservationStatus::Expired;
    let stock = state.held_stock(&reservation.product_id)?;
    let stock = give_back(state, stock, &reservation, held)?;
    let now = state.now();
    state.record(
        ChangeKind::Expire,
        &stock,
        entry(
            &reservation.product_id,
            OperationType::Release,
            held,
            Some(&reservation.order_id),
            now,
            json!({
                "reservation_id": reservation.id,
                "quantity": held,
                "reason": "expired",
                "expires_at": reservation.expires_at.to_rfc3339(),
                "reserved_quantity": stock.reserved_quantity,
                "available_quantity": stock.available_quantity(),
            }),
        ),
    );
    state.put_reservation(reservation.clone(), false);
    Ok(reservation)
}

/// The history entry of a check: what was asked and what was available.
pub fn check_entry(
    product_id: &str,
    required_quantity: i32,
    available_quantity: i32,
    now: DateTime<Utc>,
) -> HistoryEntry {
    entry(
        product_id,
        OperationType::Check,
        0,
        None,
        now,
        json!({
            "required_quantity": required_quantity,
            "available_quantity": available_quantity,
            "available": available_quantity >= required_quantity,
        }),
    )
}

/// A new history entry.
fn entry(
    product_id: &str,
    operation: OperationType,
    quantity_change: i32,
    order_id: Option<&str>,
    now: DateTime<Utc>,
    metadata: Value,
) -> HistoryEntry {
    HistoryEntry {
        id: new_id(),
        product_id: product_id.to_owned(),
        operation,
        quantity_change,
        order_id: order_id.map(str::to_owned),
        created_at: now,
        metadata,
    }
}
