//! Group commit: changes of stock that arrive together are applied in one
//! transaction.
//!
//! A [`Batcher`] runs one writer task per lane. A call hands its command to
//! the lane of its product and waits; the writer takes every command waiting
//! in its lane (up to `max_size`), runs them as one [`Work`] (each decided in
//! arrival order against the rows as the earlier ones left them: the same
//! decisions as alone), and answers each call with its own outcome. While a
//! batch commits, the next one gathers, so an idle service adds no latency
//! (a lone call is a batch of one, applied at once) and a busy one pays one
//! commit for many calls: a hot product's row is written once per batch with
//! the summed change.
//!
//! Lanes are chosen by product, so the calls of one product always meet in
//! the same lane's batches and never compete for its row lock within a
//! replica; different products are applied by several lanes at once.
//!
//! A failed batch never takes innocent calls down with it. A race lost to
//! another transaction (a unique key, a deadlock, a serialization failure)
//! reruns the whole batch, with a jittered pause, a bounded number of times.
//! A failure that may be one call's fault (a constraint the database
//! refused, a row that cannot be read) splits the batch in halves, each
//! applied on its own, down to the call at fault, which alone gets the
//! error. A database that cannot be reached answers every call of the batch
//! as it would answer one alone.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::SubsecRound as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use super::cache::StockCache;
use super::port::{InventoryStore, StoreError, StoreResult};
use super::service::Clock;
use super::work::{Command, Outcome, Planned, Work};

/// How calls are gathered into batches (`inventory.batch` in the
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most calls in one transaction.
    pub max_size: usize,
    /// How long a batch that is not full may wait for more calls before it
    /// is applied; zero applies at once whatever has arrived.
    pub max_wait: Duration,
    /// How many batches may be applied at once, each in its own transaction,
    /// by product (1 on SQLite, which has one writer).
    pub lanes: usize,
}

/// How many times at least a unit of work runs when another transaction wins
/// a race with it (a unique key, a deadlock, a serialization failure): the
/// rerun reads the winner's rows and decides against them.
pub const RACE_ATTEMPTS: u32 = 10;

/// How long a unit of work that keeps losing races keeps running again after
/// its first [`RACE_ATTEMPTS`] runs: at `SERIALIZABLE`, every transaction
/// that locked a hot row after another changed it fails, and under heavy
/// contention it may take many runs to get through.
pub const RACE_BUDGET: Duration = Duration::from_secs(10);

/// Told of every batch applied, for the metrics.
pub trait BatchObserver: Send + Sync + 'static {
    /// A batch of `size` calls was applied; each of them waited the
    /// durations in `waits` between its arrival and the start of its batch.
    fn batch_applied(&self, size: usize, waits: &[Duration]);
}

/// One call waiting for its batch.
struct Job {
    /// What to do.
    command: Command,
    /// Where its outcome goes.
    reply: oneshot::Sender<StoreResult<Outcome>>,
    /// When it arrived.
    arrived: Instant,
    /// The caller's span (its business span), under which its database work
    /// is traced.
    caller: tracing::Span,
    /// Who the caller acts for.
    actor: Option<Arc<str>>,
    /// Gone once the caller stopped waiting.
    alive: Weak<()>,
}

/// Gathers commands into batches and applies them (see the module docs).
#[derive(Clone)]
pub struct Batcher {
    /// One queue per lane.
    lanes: Arc<[mpsc::UnboundedSender<Job>]>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("lanes", &self.lanes.len())
            .finish()
    }
}

/// What a lane's writer needs.
struct Lane {
    store: Arc<dyn InventoryStore>,
    settings: BatchSettings,
    observer: Option<Arc<dyn BatchObserver>>,
    clock: Arc<dyn Clock>,
    cache: Option<Arc<dyn StockCache>>,
}

impl Batcher {
    /// Starts the writers (on the current Tokio runtime and tracing
    /// dispatch). They stop once every clone of the batcher is dropped and
    /// their queues are empty.
    pub fn start(
        store: Arc<dyn InventoryStore>,
        settings: BatchSettings,
        observer: Option<Arc<dyn BatchObserver>>,
        clock: Arc<dyn Clock>,
        cache: Option<Arc<dyn StockCache>>,
    ) -> Self {
        let settings = BatchSettings {
            max_size: settings.max_size.max(1),
            lanes: settings.lanes.max(1),
            ..settings
        };
        let lanes: Vec<_> = (0..settings.lanes)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                let lane = Lane {
                    store: store.clone(),
                    settings,
                    observer: observer.clone(),
                    clock: clock.clone(),
                    cache: cache.clone(),
                };
                tokio::spawn(lane.run(receiver).with_current_subscriber());
                sender
            })
            .collect();
        Self {
            lanes: lanes.into(),
        }
    }

    /// Applies `command` in the next batch of its lane and returns its
    /// outcome.
    pub async fn submit(&self, command: Command) -> StoreResult<Outcome> {
        let lane = &self.lanes[lane_of(&command, self.lanes.len())];
        let (reply, answer) = oneshot::channel();
        // Held while this call waits; dropped with it if the caller gives up.
        let alive = Arc::new(());
        let job = Job {
            alive: Arc::downgrade(&alive),
            command,
            reply,
            arrived: Instant::now(),
            caller: tracing::Span::current(),
            actor: super::actor::current(),
        };
        lane.send(job)
            .map_err(|_| StoreError::NotConnected("the service is shutting down".into()))?;
        let outcome = answer
            .await
            .map_err(|_| StoreError::Internal("a batch writer stopped".into()))?;
        drop(alive);
        outcome
    }
}

/// The lane of a command: by the product it changes (an order's release,
/// which may touch several, by its order), so one product's calls always
/// share batches.
fn lane_of(command: &Command, lanes: usize) -> usize {
    if lanes == 1 {
        return 0;
    }
    let mut hasher = DefaultHasher::new();
    match command {
        Command::Reserve(r) => r.product_id.hash(&mut hasher),
        Command::Release(r) => r.product_id.hash(&mut hasher),
        Command::Commit(r) => r.product_id.hash(&mut hasher),
        Command::Update(r) => r.product_id.hash(&mut hasher),
        Command::SetThreshold(r) => r.product_id.hash(&mut hasher),
        Command::SetAlternatives(r) => r.product_id.hash(&mut hasher),
        Command::ReserveOrder(r) => match r.items.first() {
            Some(item) => item.product_id.hash(&mut hasher),
            None => r.order_id.hash(&mut hasher),
        },
        Command::ReleaseOrder(r) => r.order_id.hash(&mut hasher),
        Command::Expire { .. } => return 0,
    }
    (hasher.finish() % lanes as u64) as usize
}

impl Lane {
    /// Gathers and applies batches until every sender is gone.
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = queue.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < self.settings.max_size {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if jobs.len() < self.settings.max_size && !self.settings.max_wait.is_zero() {
                let deadline = Instant::now() + self.settings.max_wait;
                while jobs.len() < self.settings.max_size {
                    tokio::select! {
                        job = queue.recv() => match job {
                            Some(job) => jobs.push(job),
                            None => break,
                        },
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            self.apply(jobs).await;
        }
    }

    /// Applies one batch and answers its calls.
    ///
    /// Tracing: a batch of one is traced as the call's own work, its
    /// transaction a child of the caller's span, as without batching. A
    /// batch of several is a trace of its own (`inventory.batch`, with
    /// `inventory.batch.size`); each call gets a `db.batch` span under its
    /// own, linked to the batch (and the batch to it), with the batch's size
    /// and the call's wait.
    async fn apply(&self, mut jobs: Vec<Job>) {
        // A caller that gave up (its deadline passed, its client went away)
        // was told its call failed: its command is abandoned, never applied
        // after the fact.
        jobs.retain(|job| job.alive.strong_count() > 0);
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let waits: Vec<Duration> = jobs.iter().map(|j| started - j.arrived).collect();
        if let Some(observer) = &self.observer {
            observer.batch_applied(jobs.len(), &waits);
        }
        let (batch, members) = if let [job] = jobs.as_slice() {
            (job.caller.clone(), Vec::new())
        } else {
            let batch = tracing::info_span!(
                parent: None,
                "inventory.batch",
                inventory.batch.size = jobs.len(),
            );
            let members: Vec<tracing::Span> = jobs
                .iter()
                .zip(&waits)
                .map(|(job, wait)| {
                    let member = tracing::info_span!(
                        parent: &job.caller,
                        "db.batch",
                        inventory.batch.size = jobs.len(),
                        inventory.batch.wait_ms = wait.as_secs_f64() * 1000.0,
                    );
                    member.follows_from(&batch);
                    batch.follows_from(&member);
                    member
                })
                .collect();
            (batch, members)
        };
        let refs: Vec<&Job> = jobs.iter().collect();
        let answers = self.settle(&refs).instrument(batch).await;
        for (job, answer) in jobs.into_iter().zip(answers) {
            // A caller that stopped waiting no longer needs its answer.
            let _ = job.reply.send(answer);
        }
        drop(members);
    }

    /// The answers to `jobs`, in order: the batch applied as a whole, or,
    /// when it failed in a way one call may have caused, its halves apart.
    ///
    /// A caller that gives up before the batch commits (its deadline
    /// passed) has its command abandoned: the store rolls the transaction
    /// back instead of committing it, and the batch is applied again
    /// without it. A caller told that its call failed does not find it
    /// applied later (unless it gave up during the COMMIT itself).
    fn settle<'a>(
        &'a self,
        jobs: &'a [&'a Job],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<StoreResult<Outcome>>> + Send + 'a>>
    {
        Box::pin(async move {
            if jobs.is_empty() {
                return Vec::new();
            }
            let commands = jobs.iter().map(|job| job.command.clone()).collect();
            let actors = jobs.iter().map(|job| job.actor.clone()).collect();
            let callers = jobs.iter().map(|job| job.alive.clone()).collect();
            let applied = self.apply_racing(commands, actors, callers).await;
            if let Err(StoreError::Abandoned) = applied {
                let live: Vec<&Job> = jobs
                    .iter()
                    .copied()
                    .filter(|job| job.alive.strong_count() > 0)
                    .collect();
                tracing::debug!(
                    abandoned = jobs.len() - live.len(),
                    size = jobs.len(),
                    "callers gave up before their batch committed; applying it without them"
                );
                let mut answers = self.settle(&live).await.into_iter();
                return jobs
                    .iter()
                    .map(|job| {
                        if job.alive.strong_count() == 0 {
                            Err(StoreError::Abandoned)
                        } else {
                            answers.next().unwrap_or_else(|| {
                                Err(StoreError::Internal("a batch lost an answer".into()))
                            })
                        }
                    })
                    .collect();
            }
            match applied {
                Ok(planned) if planned.outcomes.len() == jobs.len() => {
                    planned.outcomes.into_iter().map(Ok).collect()
                }
                Ok(_) => vec![
                    Err(StoreError::Internal(
                        "a batch was answered with another number of outcomes".into()
                    ));
                    jobs.len()
                ],
                Err(error) if jobs.len() > 1 && may_be_one_calls_fault(&error) => {
                    tracing::warn!(%error, size = jobs.len(), "a batch failed; applying its halves apart");
                    let (left, right) = jobs.split_at(jobs.len() / 2);
                    let mut answers = self.settle(left).await;
                    answers.extend(self.settle(right).await);
                    answers
                }
                Err(error) => vec![Err(error); jobs.len()],
            }
        })
    }

    /// Applies `commands` as one work (see [`apply_racing`]).
    async fn apply_racing(
        &self,
        commands: Vec<Command>,
        actors: Vec<Option<Arc<str>>>,
        callers: Vec<Weak<()>>,
    ) -> StoreResult<Planned> {
        let work = Work {
            commands,
            now: self.clock.now().trunc_subsecs(6),
            actors,
            callers,
        };
        apply_racing(self.store.as_ref(), &work, self.cache.as_deref()).await
    }
}

/// Applies `work`, and again after a race lost to another transaction
/// (nothing was written), at least [`RACE_ATTEMPTS`] times and for up to
/// [`RACE_BUDGET`], with a growing jittered pause between runs. Once it has
/// committed, the stock it changed goes into `cache`, before any caller is
/// answered.
pub async fn apply_racing(
    store: &dyn InventoryStore,
    work: &Work,
    cache: Option<&dyn StockCache>,
) -> StoreResult<Planned> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        match store.apply(work).await {
            Ok(planned) => {
                if let Some(cache) = cache
                    && !planned.changes.stocks.is_empty()
                {
                    let stocks: Vec<_> = planned
                        .changes
                        .stocks
                        .iter()
                        .map(|w| w.stock.clone())
                        .collect();
                    cache.put(&stocks, work.now).await;
                }
                return Ok(planned);
            }
            Err(StoreError::Conflict(reason))
                if attempt < RACE_ATTEMPTS || started.elapsed() < RACE_BUDGET =>
            {
                tracing::debug!(%reason, attempt, "a unit of work lost a race; running it again");
                tokio::time::sleep(race_pause(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether a failed batch may have failed for one call's sake, so that the
/// others may succeed without it: a write the database refused or rows it
/// could not read. A lost race the batch reran until it gave up may be
/// one call's too. An unreachable database fails every call alike.
fn may_be_one_calls_fault(error: &StoreError) -> bool {
    matches!(error, StoreError::Internal(_) | StoreError::Conflict(_))
}

/// The pause before a unit of work that lost a race runs again: up to 1 ms
/// after the first loss, doubling to 32 ms, at a random point, so that the
/// transactions that collided do not collide again in step.
fn race_pause(attempt: u32) -> Duration {
    full_jitter(Duration::from_micros(
        1000 << attempt.saturating_sub(1).min(5),
    ))
}

/// A random duration between zero and `ceiling` ("full jitter").
/// `RandomState` is seeded afresh for each call, which is random enough to
/// spread retries.
pub fn full_jitter(ceiling: Duration) -> Duration {
    use std::hash::{BuildHasher as _, RandomState};
    let random = RandomState::new().build_hasher().finish();
    let ceiling = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % ceiling.saturating_add(1))
}

#[cfg(test)]
mod tests {
    //! The batcher over the in-memory store: calls that arrive together
    //! share a transaction, and each still gets the outcome it would get
    //! alone.

    use std::sync::Mutex;

    use super::*;
    use crate::domain::memory::MemoryStore;
    use crate::domain::{Error, Inventory, InventorySettings, Parts, SystemClock};

    /// Records the size of every batch.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl BatchObserver for Sizes {
        fn batch_applied(&self, size: usize, waits: &[Duration]) {
            assert_eq!(waits.len(), size);
            self.0.lock().expect("sizes").push(size);
        }
    }

    struct Fixture {
        inventory: Inventory,
        store: Arc<MemoryStore>,
        sizes: Arc<Sizes>,
    }

    /// Batches of up to 64 calls that wait up to `max_wait` to fill.
    fn batched(max_wait: Duration, lanes: usize) -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let sizes = Arc::new(Sizes::default());
        let inventory = Inventory::with_parts(
            store.clone(),
            InventorySettings {
                default_reservation_timeout: Duration::from_secs(300),
                max_reservation_timeout: Duration::from_secs(3600),
                record_checks: false,
                request_id_ttl: Duration::from_secs(3600),
                events: crate::domain::events::EventSettings::default(),
                batch: Some(BatchSettings {
                    max_size: 64,
                    max_wait,
                    lanes,
                }),
            },
            Parts {
                clock: Some(Arc::new(SystemClock)),
                batch_observer: Some(sizes.clone()),
                ..Parts::default()
            },
        );
        Fixture {
            inventory,
            store,
            sizes,
        }
    }

    fn sizes(f: &Fixture) -> Vec<usize> {
        f.sizes.0.lock().expect("sizes").clone()
    }

    async fn levels(f: &Fixture, product: &str) -> (i32, i32) {
        let stock = f.inventory.check(product, 1).await.expect("check").stock;
        (stock.total_quantity, stock.reserved_quantity)
    }

    #[tokio::test]
    async fn a_call_whose_caller_gave_up_is_never_applied() {
        let f = batched(Duration::from_millis(20), 1);
        f.inventory
            .update("p", "set", 10, None, "")
            .await
            .expect("stock");
        // Waits in a batch that is still gathering; its caller stops waiting.
        let given_up = tokio::time::timeout(
            Duration::from_millis(1),
            f.inventory.reserve("p", "gave-up", 3, 0),
        )
        .await;
        assert!(given_up.is_err(), "the caller gave up first");
        let kept = f.inventory.reserve("p", "kept", 2, 0).await.expect("kept");
        assert_eq!(kept.stock.reserved_quantity, 2);
        assert_eq!(
            levels(&f, "p").await,
            (10, 2),
            "only the call still awaited"
        );

        // A work whose caller is gone is rolled back by the store.
        let gone = std::sync::Weak::new();
        let mut work = Work::single(Command::Expire { limit: 10 }, chrono::Utc::now());
        work.callers.push(gone);
        assert!(matches!(
            f.store.apply(&work).await,
            Err(StoreError::Abandoned)
        ));
    }

    #[tokio::test]
    async fn a_lone_call_is_applied_at_once_in_a_batch_of_one() {
        let f = batched(Duration::ZERO, 1);
        f.inventory
            .update("p", "set", 5, None, "")
            .await
            .expect("set");
        f.inventory.reserve("p", "o", 2, 0).await.expect("reserve");
        assert_eq!(sizes(&f), [1, 1]);
        assert_eq!(levels(&f, "p").await, (5, 2));
    }

    #[tokio::test]
    async fn calls_that_arrive_together_share_a_batch_and_keep_their_outcomes() {
        let f = batched(Duration::from_millis(50), 1);
        f.inventory
            .update("p", "set", 5, None, "")
            .await
            .expect("set");
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..8 {
            let inventory = f.inventory.clone();
            calls.spawn(async move { (n, inventory.reserve("p", &format!("o{n}"), 1, 0).await) });
        }
        let (mut held, mut short) = (0, 0);
        while let Some(done) = calls.join_next().await {
            match done.expect("task") {
                (_, Ok(result)) => {
                    assert!(result.created);
                    held += 1;
                }
                (_, Err(Error::InsufficientStock { available: 0, .. })) => short += 1,
                (n, Err(other)) => panic!("call {n}: {other:?}"),
            }
        }
        assert_eq!((held, short), (5, 3), "the first five in arrival order");
        assert!(sizes(&f).iter().any(|&size| size > 1), "{:?}", sizes(&f));
        assert_eq!(levels(&f, "p").await, (5, 5));
        let history = f.inventory.history("p", 100, "").await.expect("history");
        assert_eq!(history.entries.len(), 6, "one set and five reservations");
    }

    #[tokio::test]
    async fn orders_keys_and_retries_in_one_batch_decide_as_if_alone() {
        let f = batched(Duration::from_millis(50), 1);
        for product in ["a", "b"] {
            f.inventory
                .update(product, "set", 3, None, "")
                .await
                .expect("set");
        }
        let items = |list: &[(&str, i32)]| -> Vec<(String, i32)> {
            list.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect()
        };
        let (too_much, enough) = (items(&[("a", 1), ("b", 9)]), items(&[("a", 1), ("b", 1)]));
        let (short, whole, twice, retry, added, replay) = tokio::join!(
            f.inventory.reserve_order("o1", &too_much, 0),
            f.inventory.reserve_order("o2", &enough, 0),
            f.inventory.reserve("a", "o3", 1, 0),
            f.inventory.reserve("a", "o3", 1, 0),
            f.inventory.update("b", "add", 2, None, "k-1"),
            f.inventory.update("b", "add", 2, None, "k-1"),
        );
        assert!(
            matches!(short, Err(Error::InsufficientStockForOrder { .. })),
            "{short:?}"
        );
        assert!(whole.expect("whole order").items.iter().all(|i| i.created));
        let (first, again) = (twice.expect("reserve"), retry.expect("retry"));
        assert_ne!(first.created, again.created, "one created, one found again");
        assert_eq!(first.reservation.id, again.reservation.id);
        let (added, replay) = (added.expect("add"), replay.expect("replay"));
        assert_ne!(added.replayed, replay.replayed, "one applied, one replayed");
        assert_eq!(added.stock.version, replay.stock.version);
        assert_eq!(
            levels(&f, "a").await,
            (3, 2),
            "the short order held nothing"
        );
        assert_eq!(levels(&f, "b").await, (5, 1), "added once");
    }

    #[tokio::test]
    async fn a_call_the_database_refuses_fails_alone() {
        let f = batched(Duration::from_millis(50), 1);
        for product in ["p", "poison"] {
            f.inventory
                .update(product, "set", 10, None, "")
                .await
                .expect("set");
        }
        f.store.refuse_writes_of("poison");
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..6 {
            let inventory = f.inventory.clone();
            let product = if n == 3 { "poison" } else { "p" };
            calls.spawn(
                async move { (n, inventory.reserve(product, &format!("o{n}"), 1, 0).await) },
            );
        }
        while let Some(done) = calls.join_next().await {
            match done.expect("task") {
                (3, outcome) => assert!(
                    matches!(outcome, Err(Error::Store(StoreError::Internal(_)))),
                    "{outcome:?}"
                ),
                (n, outcome) => assert!(outcome.is_ok(), "call {n}: {outcome:?}"),
            }
        }
        assert_eq!(levels(&f, "p").await, (10, 5));
        assert_eq!(levels(&f, "poison").await, (10, 0));
    }

    #[tokio::test]
    async fn a_batch_that_lost_a_race_runs_again_and_an_outage_answers_every_call() {
        let f = batched(Duration::ZERO, 2);
        f.inventory
            .update("p", "set", 10, None, "")
            .await
            .expect("set");
        for _ in 1..RACE_ATTEMPTS {
            f.store
                .fail_next(StoreError::Conflict("deadlock detected".into()));
        }
        f.inventory
            .reserve("p", "o1", 1, 0)
            .await
            .expect("the last run wins");
        f.store
            .fail_next(StoreError::Unavailable("connection closed".into()));
        assert!(matches!(
            f.inventory.reserve("p", "o2", 1, 0).await,
            Err(Error::Store(StoreError::Unavailable(_)))
        ));
        assert_eq!(levels(&f, "p").await, (10, 1));
    }

    #[test]
    fn a_product_keeps_its_lane() {
        let reserve = |product: &str| {
            Command::Reserve(super::super::work::NewReservation {
                id: "r".into(),
                product_id: product.into(),
                order_id: "o".into(),
                quantity: 1,
                timeout: chrono::Duration::seconds(1),
            })
        };
        let lanes: std::collections::HashSet<usize> =
            (0..20).map(|_| lane_of(&reserve("hot"), 4)).collect();
        assert_eq!(lanes.len(), 1);
        let spread: std::collections::HashSet<usize> = (0..64)
            .map(|n| lane_of(&reserve(&format!("p{n}")), 4))
            .collect();
        assert!(spread.len() > 1, "products spread over the lanes");
        assert_eq!(lane_of(&reserve("any"), 1), 0);
    }
}
