//! `inventory-load`: drives a running inventory-service over gRPC, REST or
//! Connect, reports throughput, latency percentiles and errors by code, and
//! at the end checks every product it touched against what it was told: a
//! fast wrong answer fails loudly.
//!
//! ```text
//! cargo run --release --bin inventory-load -- --grpc http://127.0.0.1:9083 \
//!     --concurrency 16 --duration 10s --products 1000 --mix reserve=100
//! cargo run --release --bin inventory-load -- --help
//! ```
//!
//! It creates its own products (`<prefix>-1` .. `<prefix>-<products>`, with
//! `--stock` units each, unless `--no-setup`), reads their stock before the
//! load, keeps count of every acknowledged change (reservations made,
//! released and committed, restocks), and after the load checks that each
//! product's stock on hand and reserved quantity are exactly the starting
//! figures plus those changes. Exit status: 0 when they match, 1 when they do
//! not, 2 for a bad command line or a service that cannot be reached.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, CommitReservationRequest, OrderItem, ReleaseInventoryRequest,
    ReserveInventoryRequest, ReserveOrderRequest, UpdateInventoryRequest,
};
use serde::Serialize;
use tokio::sync::Mutex;
use tonic::transport::Channel;

const USAGE: &str = "\
usage: inventory-load [options]

  --grpc URL            the service's gRPC endpoint (default http://127.0.0.1:9083); setup and
                        the final check always go over gRPC
  --http URL            the service's HTTP endpoint, for --protocol rest or connect
                        (default http://127.0.0.1:8083)
  --protocol P          grpc (default), rest or connect
  --concurrency N       concurrent clients, each sending one call at a time (default 16)
  --connections N       HTTP/2 connections the gRPC clients share (default 4)
  --duration D          how long to run, e.g. 10s, 500ms (default 10s)
  --requests N          stop after N calls instead (whichever comes first with --duration)
  --mix OP=W,...        operation weights, of check, reserve, order, release, commit, update
                        (default reserve=100); release and commit act on the client's own
                        reservations, and reserve when it has none
  --products N          how many products (default 1000)
  --distribution D      uniform (default), hot (every call on the first product) or zipf[:S]
                        (exponent S, default 1.0)
  --quantity Q          units per reservation or restock: N or MIN-MAX (default 1)
  --stock N             units each product is set to (default 1000000000)
  --prefix P            product id prefix (default load-<random>)
  --no-setup            use existing products <prefix>-1..N as they are
  --no-verify           skip the final check
  --backoff             a call refused with RESOURCE_EXHAUSTED makes its client wait what the
                        service asked (retry-after) plus up to as much again at random before
                        its next call, as a well-behaved client does; without it every refused
                        call is sent again at once
  --json                print the report as JSON
  --help                this text
";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    Grpc,
    Rest,
    Connect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Check,
    Reserve,
    Order,
    Release,
    Commit,
    Update,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "check" => Self::Check,
            "reserve" => Self::Reserve,
            "order" => Self::Order,
            "release" => Self::Release,
            "commit" => Self::Commit,
            "update" => Self::Update,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Distribution {
    Uniform,
    Hot,
    Zipf(f64),
}

#[derive(Debug, Clone)]
struct Args {
    grpc: String,
    http: String,
    protocol: Protocol,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    requests: Option<u64>,
    mix: Vec<(Op, u32)>,
    products: usize,
    distribution: Distribution,
    quantity: (i32, i32),
    stock: i32,
    prefix: String,
    setup: bool,
    verify: bool,
    backoff: bool,
    json: bool,
}

fn parse_args(raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        grpc: "http://127.0.0.1:9083".into(),
        http: "http://127.0.0.1:8083".into(),
        protocol: Protocol::Grpc,
        concurrency: 16,
        connections: 4,
        duration: Duration::from_secs(10),
        requests: None,
        mix: vec![(Op::Reserve, 100)],
        products: 1000,
        distribution: Distribution::Uniform,
        quantity: (1, 1),
        stock: 1_000_000_000,
        prefix: format!("load-{:08x}", random_u64() as u32),
        setup: true,
        verify: true,
        backoff: false,
        json: false,
    };
    let mut raw = raw.peekable();
    while let Some(flag) = raw.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |text: String| -> Result<u64, String> {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: {text:?} is not a number"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--grpc" => args.grpc = value()?,
            "--http" => args.http = value()?,
            "--protocol" => {
                args.protocol = match value()?.as_str() {
                    "grpc" => Protocol::Grpc,
                    "rest" => Protocol::Rest,
                    "connect" => Protocol::Connect,
                    other => {
                        return Err(format!(
                            "--protocol: {other:?} is not grpc, rest or connect"
                        ));
                    }
                }
            }
            "--concurrency" => args.concurrency = number(value()?)?.max(1) as usize,
            "--connections" => args.connections = number(value()?)?.max(1) as usize,
            "--duration" => args.duration = parse_duration(&value()?)?,
            "--requests" => args.requests = Some(number(value()?)?),
            "--mix" => args.mix = parse_mix(&value()?)?,
            "--products" => args.products = number(value()?)?.max(1) as usize,
            "--distribution" => args.distribution = parse_distribution(&value()?)?,
            "--quantity" => args.quantity = parse_quantity(&value()?)?,
            "--stock" => {
                args.stock = i32::try_from(number(value()?)?)
                    .map_err(|_| "--stock: at most 2147483647".to_owned())?
            }
            "--prefix" => args.prefix = value()?,
            "--no-setup" => args.setup = false,
            "--no-verify" => args.verify = false,
            "--backoff" => args.backoff = true,
            "--json" => args.json = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Some(args))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("--duration: {text:?} is not a duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("--duration: unit of {text:?} is not ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_mix(text: &str) -> Result<Vec<(Op, u32)>, String> {
    let mut mix = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let op =
            Op::parse(name.trim()).ok_or_else(|| format!("--mix: unknown operation {name:?}"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight {weight:?} is not a number"))?;
        mix.push((op, weight));
    }
    if mix.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        return Err("--mix: the weights add up to 0".into());
    }
    Ok(mix)
}

fn parse_distribution(text: &str) -> Result<Distribution, String> {
    match text.split_once(':') {
        None if text == "uniform" => Ok(Distribution::Uniform),
        None if text == "hot" => Ok(Distribution::Hot),
        None if text == "zipf" => Ok(Distribution::Zipf(1.0)),
        Some(("zipf", s)) => s
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .map(Distribution::Zipf)
            .ok_or_else(|| format!("--distribution: zipf exponent {s:?} is not a positive number")),
        _ => Err(format!(
            "--distribution: {text:?} is not uniform, hot or zipf[:S]"
        )),
    }
}

fn parse_quantity(text: &str) -> Result<(i32, i32), String> {
    let bad = || format!("--quantity: {text:?} is not N or MIN-MAX (at least 1)");
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: i32 = low.trim().parse().map_err(|_| bad())?;
    let high: i32 = high.trim().parse().map_err(|_| bad())?;
    if low < 1 || high < low {
        return Err(bad());
    }
    Ok((low, high))
}

/// A random number from the standard library's per-process hasher keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _, RandomState};
    RandomState::new().build_hasher().finish()
}

/// A small, fast generator for the clients (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(random_u64() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks products by the chosen distribution.
struct Picker {
    products: usize,
    /// Cumulative weights, for zipf.
    cdf: Vec<f64>,
    hot: bool,
}

impl Picker {
    fn new(products: usize, distribution: &Distribution) -> Self {
        let cdf = match distribution {
            Distribution::Zipf(s) => {
                let mut total = 0.0;
                let mut cdf: Vec<f64> = (1..=products)
                    .map(|k| {
                        total += 1.0 / (k as f64).powf(*s);
                        total
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= total;
                }
                cdf
            }
            Distribution::Uniform | Distribution::Hot => Vec::new(),
        };
        Self {
            products,
            cdf,
            hot: *distribution == Distribution::Hot,
        }
    }

    /// A product index, 0-based.
    fn pick(&self, rng: &mut Rng) -> usize {
        if self.hot {
            0
        } else if self.cdf.is_empty() {
            rng.below(self.products as u64) as usize
        } else {
            let u = rng.unit();
            self.cdf.partition_point(|c| *c < u).min(self.products - 1)
        }
    }
}

/// What a call answered, for the counts: OK, or a gRPC code's name.
type Code = &'static str;

/// Per product: the changes the service acknowledged.
#[derive(Debug, Default, Clone, Copy)]
struct Acknowledged {
    /// Stock on hand added (restocks) less committed.
    total: i64,
    /// Reserved: reservations made, less released and committed.
    reserved: i64,
}

/// Everything a client saw.
#[derive(Default)]
struct Tally {
    /// Latency of every call, in microseconds.
    latencies: Vec<u32>,
    /// Latency of every call the service served (not shed with
    /// RESOURCE_EXHAUSTED), in microseconds.
    served: Vec<u32>,
    /// Calls by (operation, code).
    outcomes: BTreeMap<(Op, Code), u64>,
    /// Acknowledged changes, by product index.
    changes: HashMap<usize, Acknowledged>,
}

/// One client's connections to the service.
struct Client {
    grpc: InventoryServiceClient<Channel>,
    http: reqwest::Client,
    base: String,
    protocol: Protocol,
    /// What the last refusal asked the client to wait (`retry-after`).
    pushback: Option<Duration>,
}

/// A call's result: the fields the tally needs, or the code it failed with.
type Answer<T> = Result<T, Code>;

fn grpc_code(status: &tonic::Status) -> Code {
    use tonic::Code as C;
    match status.code() {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The code of a REST (`{"code": 9}`) or Connect (`{"code":
/// "failed_precondition"}`) error body.
fn http_code(body: &serde_json::Value) -> Code {
    let by_number = body["code"]
        .as_i64()
        .map(|n| grpc_code(&tonic::Status::new(tonic::Code::from(n as i32), "")));
    let by_name = body["code"].as_str().map(|name| {
        let upper = name.to_ascii_uppercase();
        [
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ]
        .into_iter()
        .find(|known| *known == upper)
        .unwrap_or("UNKNOWN")
    });
    by_number.or(by_name).unwrap_or("UNKNOWN")
}

/// A `retry-after` value in seconds.
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

impl Client {
    /// The code of a failed gRPC call, noting the wait it asks for.
    fn refused(&mut self, status: &tonic::Status) -> Code {
        self.pushback = retry_after(
            status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        grpc_code(status)
    }

    /// Sends `body` to the REST `path` (`method`) or to the Connect
    /// `rpc`, and reads the JSON answer.
    async fn http(
        &mut self,
        method: reqwest::Method,
        path: &str,
        rpc: &str,
        body: serde_json::Value,
    ) -> Answer<serde_json::Value> {
        let request = match self.protocol {
            Protocol::Rest => {
                let request = self
                    .http
                    .request(method.clone(), format!("{}{path}", self.base));
                if method == reqwest::Method::GET {
                    request
                } else {
                    request.json(&body)
                }
            }
            Protocol::Connect | Protocol::Grpc => self
                .http
                .post(format!("{}/inventory.v1.InventoryService/{rpc}", self.base))
                .json(&body),
        };
        let response = request.send().await.map_err(|_| "TRANSPORT")?;
        let ok = response.status().is_success();
        self.pushback = retry_after(
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let json: serde_json::Value = response.json().await.map_err(|_| "TRANSPORT")?;
        if ok { Ok(json) } else { Err(http_code(&json)) }
    }

    async fn check(&mut self, product: &str) -> Answer<()> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .check_inventory(CheckInventoryRequest {
                    product_id: product.into(),
                    required_quantity: 1,
                })
                .await
                .map(drop)
                .map_err(|s| self.refused(&s)),
            _ => self
                .http(
                    reqwest::Method::GET,
                    &format!("/api/v1/inventory/{product}"),
                    "CheckInventory",
                    serde_json::json!({"product_id": product, "required_quantity": 1}),
                )
                .await
                .map(drop),
        }
    }

    async fn reserve(&mut self, product: &str, order: &str, quantity: i32) -> Answer<()> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .reserve_inventory(ReserveInventoryRequest {
                    product_id: product.into(),
                    quantity,
                    order_id: order.into(),
                    reservation_timeout: 3600,
                })
                .await
                .map(drop)
                .map_err(|s| self.refused(&s)),
            _ => self
                .http(
                    reqwest::Method::POST,
                    "/api/v1/inventory/reserve",
                    "ReserveInventory",
                    serde_json::json!({"product_id": product, "quantity": quantity,
                        "order_id": order, "reservation_timeout": 3600}),
                )
                .await
                .map(drop),
        }
    }

    async fn reserve_order(&mut self, order: &str, items: &[(String, i32)]) -> Answer<()> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .reserve_order(ReserveOrderRequest {
                    order_id: order.into(),
                    items: items
                        .iter()
                        .map(|(product_id, quantity)| OrderItem {
                            product_id: product_id.clone(),
                            quantity: *quantity,
                        })
                        .collect(),
                    reservation_timeout: 3600,
                })
                .await
                .map(drop)
                .map_err(|s| self.refused(&s)),
            _ => {
                let items: Vec<_> = items
                    .iter()
                    .map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q}))
                    .collect();
                self.http(
                    reqwest::Method::POST,
                    &format!("/api/v1/orders/{order}/reserve"),
                    "ReserveOrder",
                    serde_json::json!({"order_id": order, "items": items,
                        "reservation_timeout": 3600}),
                )
                .await
                .map(drop)
            }
        }
    }

    /// Releases everything the reservation holds; answers how much.
    async fn release(&mut self, product: &str, order: &str) -> Answer<i64> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .release_inventory(ReleaseInventoryRequest {
                    product_id: product.into(),
                    order_id: order.into(),
                    ..Default::default()
                })
                .await
                .map(|r| i64::from(r.into_inner().released_quantity))
                .map_err(|s| self.refused(&s)),
            _ => self
                .http(
                    reqwest::Method::POST,
                    "/api/v1/inventory/release",
                    "ReleaseInventory",
                    serde_json::json!({"product_id": product, "order_id": order}),
                )
                .await
                .map(|json| json_i64(&json, "released_quantity", "releasedQuantity")),
        }
    }

    /// Commits everything the reservation holds; answers how much.
    async fn commit(&mut self, product: &str, order: &str) -> Answer<i64> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .commit_reservation(CommitReservationRequest {
                    product_id: product.into(),
                    order_id: order.into(),
                    ..Default::default()
                })
                .await
                .map(|r| i64::from(r.into_inner().committed_quantity))
                .map_err(|s| self.refused(&s)),
            _ => self
                .http(
                    reqwest::Method::POST,
                    "/api/v1/inventory/commit",
                    "CommitReservation",
                    serde_json::json!({"product_id": product, "order_id": order}),
                )
                .await
                .map(|json| json_i64(&json, "committed_quantity", "committedQuantity")),
        }
    }

    /// Adds `quantity` to stock on hand; answers the change.
    async fn restock(&mut self, product: &str, quantity: i32) -> Answer<i64> {
        match self.protocol {
            Protocol::Grpc => self
                .grpc
                .update_inventory(UpdateInventoryRequest {
                    product_id: product.into(),
                    quantity,
                    operation: "add".into(),
                    ..Default::default()
                })
                .await
                .map(|r| i64::from(r.into_inner().quantity_change))
                .map_err(|s| self.refused(&s)),
            _ => self
                .http(
                    reqwest::Method::PUT,
                    &format!("/api/v1/inventory/{product}"),
                    "UpdateInventory",
                    serde_json::json!({"product_id": product, "quantity": quantity,
                        "operation": "add"}),
                )
                .await
                .map(|json| json_i64(&json, "quantity_change", "quantityChange")),
        }
    }
}

fn json_i64(json: &serde_json::Value, snake: &str, camel: &str) -> i64 {
    json.get(snake)
        .or_else(|| json.get(camel))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

/// The shared plan of a run.
struct Plan {
    args: Args,
    picker: Picker,
    /// Cumulative operation weights.
    mix: Vec<(Op, u32)>,
    started: Instant,
    deadline: Instant,
    /// Calls started so far, against `--requests`.
    sent: std::sync::atomic::AtomicU64,
}

impl Plan {
    fn product(&self, index: usize) -> String {
        format!("{}-{}", self.args.prefix, index + 1)
    }

    fn op(&self, rng: &mut Rng) -> Op {
        let total = self.mix.last().map_or(1, |(_, w)| *w);
        let roll = rng.below(u64::from(total)) as u32;
        self.mix
            .iter()
            .find(|(_, upto)| roll < *upto)
            .map_or(Op::Reserve, |(op, _)| *op)
    }

    fn quantity(&self, rng: &mut Rng) -> i32 {
        let (low, high) = self.args.quantity;
        low + rng.below(u64::from((high - low) as u32) + 1) as i32
    }

    /// Whether another call may start.
    fn more(&self) -> bool {
        let sent = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Instant::now() < self.deadline && self.args.requests.is_none_or(|n| sent < n)
    }
}

/// One client: calls until the plan says stop.
async fn run_client(index: usize, plan: Arc<Plan>, mut client: Client) -> Tally {
    let mut rng = Rng::new();
    let mut tally = Tally::default();
    // The client's own reservations: (order, product index, quantity).
    let mut holds: Vec<(String, usize, i32)> = Vec::new();
    let mut orders = 0u64;
    while plan.more() {
        let mut op = plan.op(&mut rng);
        if matches!(op, Op::Release | Op::Commit) && holds.is_empty() {
            op = Op::Reserve;
        }
        let started = Instant::now();
        let code: Code = match op {
            Op::Check => {
                let product = plan.product(plan.picker.pick(&mut rng));
                client.check(&product).await.err().unwrap_or("OK")
            }
            Op::Reserve => {
                let index_of = plan.picker.pick(&mut rng);
                let quantity = plan.quantity(&mut rng);
                orders += 1;
                let order = format!("{}-c{index}-o{orders}", plan.args.prefix);
                match client
                    .reserve(&plan.product(index_of), &order, quantity)
                    .await
                {
                    Ok(()) => {
                        tally.changes.entry(index_of).or_default().reserved += i64::from(quantity);
                        holds.push((order, index_of, quantity));
                        "OK"
                    }
                    Err(code) => code,
                }
            }
            Op::Order => {
                let mut items: BTreeMap<usize, i32> = BTreeMap::new();
                for _ in 0..2 {
                    *items.entry(plan.picker.pick(&mut rng)).or_default() +=
                        plan.quantity(&mut rng);
                }
                orders += 1;
                let order = format!("{}-c{index}-o{orders}", plan.args.prefix);
                let listed: Vec<(String, i32)> =
                    items.iter().map(|(p, q)| (plan.product(*p), *q)).collect();
                match client.reserve_order(&order, &listed).await {
                    Ok(()) => {
                        for (product, quantity) in items {
                            tally.changes.entry(product).or_default().reserved +=
                                i64::from(quantity);
                            holds.push((order.clone(), product, quantity));
                        }
                        "OK"
                    }
                    Err(code) => code,
                }
            }
            Op::Release | Op::Commit => {
                let (order, product, _) = holds.swap_remove(rng.below(holds.len() as u64) as usize);
                let name = plan.product(product);
                let answer = if op == Op::Release {
                    client.release(&name, &order).await
                } else {
                    client.commit(&name, &order).await
                };
                match answer {
                    Ok(amount) => {
                        let change = tally.changes.entry(product).or_default();
                        change.reserved -= amount;
                        if op == Op::Commit {
                            change.total -= amount;
                        }
                        "OK"
                    }
                    Err(code) => code,
                }
            }
            Op::Update => {
                let product = plan.picker.pick(&mut rng);
                let quantity = plan.quantity(&mut rng);
                match client.restock(&plan.product(product), quantity).await {
                    Ok(change) => {
                        tally.changes.entry(product).or_default().total += change;
                        "OK"
                    }
                    Err(code) => code,
                }
            }
        };
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        tally.latencies.push(micros);
        *tally.outcomes.entry((op, code)).or_default() += 1;
        if code != "RESOURCE_EXHAUSTED" {
            tally.served.push(micros);
        } else if plan.args.backoff
            && let Some(wait) = client.pushback.take()
        {
            // Never sooner than asked; spread over as much again, so that
            // clients refused together do not all come back together.
            let wait = wait.mul_f64(1.0 + rng.unit());
            let left = plan.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(left)).await;
        }
    }
    tally
}

/// The report of a run.
#[derive(Serialize)]
struct Report {
    protocol: Protocol,
    concurrency: usize,
    products: usize,
    distribution: Distribution,
    seconds: f64,
    calls: u64,
    calls_per_second: f64,
    ok: u64,
    latency_ms: Latency,
    /// Of the calls not shed (RESOURCE_EXHAUSTED) only.
    served_latency_ms: Latency,
    /// Calls by operation and code.
    outcomes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Products checked, and those whose figures did not match.
    verified: Option<usize>,
    mismatches: Vec<String>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    /// The percentiles of `sorted` (microseconds), in milliseconds.
    fn of(sorted: &[u32]) -> Self {
        Self {
            p50: percentile(sorted, 50.0),
            p90: percentile(sorted, 90.0),
            p99: percentile(sorted, 99.0),
            max: percentile(sorted, 100.0),
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Each product's (stock on hand, reserved), read over gRPC.
async fn levels(
    client: &mut InventoryServiceClient<Channel>,
    plan: &Plan,
    indices: impl Iterator<Item = usize>,
) -> Result<HashMap<usize, (i64, i64)>, tonic::Status> {
    let mut levels = HashMap::new();
    for index in indices {
        let stock = client
            .check_inventory(CheckInventoryRequest {
                product_id: plan.product(index),
                required_quantity: 1,
            })
            .await?
            .into_inner();
        levels.insert(
            index,
            (
                i64::from(stock.current_quantity),
                i64::from(stock.reserved_quantity),
            ),
        );
    }
    Ok(levels)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("inventory-load: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("inventory-load: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load; `Ok(false)` when the final check found a mismatch.
async fn run(args: Args) -> Result<bool, String> {
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(
            Channel::from_shared(args.grpc.clone())
                .map_err(|e| format!("--grpc {}: {e}", args.grpc))?
                .connect()
                .await
                .map_err(|e| format!("cannot reach {}: {e}", args.grpc))?,
        );
    }
    let mut setup = InventoryServiceClient::new(channels[0].clone());
    let mut cumulative = 0;
    let mix = args
        .mix
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(op, w)| {
            cumulative += w;
            (*op, cumulative)
        })
        .collect();
    let plan = Plan {
        picker: Picker::new(args.products, &args.distribution),
        mix,
        started: Instant::now(),
        deadline: Instant::now(),
        sent: 0.into(),
        args,
    };
    if plan.args.setup {
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = plan.args.products.div_ceil(8);
        for part in 0..8 {
            let mut client = setup.clone();
            let names: Vec<String> = (part * per_task
                ..((part + 1) * per_task).min(plan.args.products))
                .map(|i| plan.product(i))
                .collect();
            let stock = plan.args.stock;
            tasks.spawn(async move {
                for product_id in names {
                    client
                        .update_inventory(UpdateInventoryRequest {
                            product_id,
                            quantity: stock,
                            operation: "set".into(),
                            ..Default::default()
                        })
                        .await?;
                }
                Ok::<_, tonic::Status>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| e.to_string())?
                .map_err(|e| format!("setting up the products: {e}"))?;
        }
    }
    let before = if plan.args.verify {
        levels(&mut setup, &plan, 0..plan.args.products)
            .await
            .map_err(|e| format!("reading the products: {e}"))?
    } else {
        HashMap::new()
    };

    let plan = Arc::new(Plan {
        started: Instant::now(),
        deadline: Instant::now() + plan.args.duration,
        ..plan
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    let tallies = Arc::new(Mutex::new(Vec::new()));
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..plan.args.concurrency {
        let client = Client {
            grpc: InventoryServiceClient::new(channels[index % channels.len()].clone()),
            http: http.clone(),
            base: plan.args.http.trim_end_matches('/').to_owned(),
            protocol: plan.args.protocol,
            pushback: None,
        };
        let plan = plan.clone();
        let tallies = tallies.clone();
        clients.spawn(async move {
            let tally = run_client(index, plan, client).await;
            tallies.lock().await.push(tally);
        });
    }
    while let Some(done) = clients.join_next().await {
        done.map_err(|e| format!("a client failed: {e}"))?;
    }
    let elapsed = plan.started.elapsed();

    let mut latencies = Vec::new();
    let mut served = Vec::new();
    let mut outcomes: BTreeMap<(Op, Code), u64> = BTreeMap::new();
    let mut changes: HashMap<usize, Acknowledged> = HashMap::new();
    for tally in tallies.lock().await.drain(..) {
        latencies.extend(tally.latencies);
        served.extend(tally.served);
        for (key, count) in tally.outcomes {
            *outcomes.entry(key).or_default() += count;
        }
        for (product, change) in tally.changes {
            let sum = changes.entry(product).or_default();
            sum.total += change.total;
            sum.reserved += change.reserved;
        }
    }
    latencies.sort_unstable();
    served.sort_unstable();

    let mut mismatches = Vec::new();
    let verified = if plan.args.verify {
        let after = levels(&mut setup, &plan, 0..plan.args.products)
            .await
            .map_err(|e| format!("reading the products after the load: {e}"))?;
        for (index, (total, reserved)) in &after {
            let (total_before, reserved_before) = before.get(index).copied().unwrap_or_default();
            let change = changes.get(index).copied().unwrap_or_default();
            let expected = (
                total_before + change.total,
                reserved_before + change.reserved,
            );
            if (*total, *reserved) != expected {
                mismatches.push(format!(
                    "{}: on hand {total}, reserved {reserved}; expected {}, {}",
                    plan.product(*index),
                    expected.0,
                    expected.1
                ));
            }
        }
        mismatches.sort();
        Some(after.len())
    } else {
        None
    };

    let calls = latencies.len() as u64;
    let ok = outcomes
        .iter()
        .filter(|((_, code), _)| *code == "OK")
        .map(|(_, n)| n)
        .sum();
    let mut by_op: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((op, code), count) in &outcomes {
        let op = serde_json::to_value(op)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        by_op
            .entry(op)
            .or_default()
            .insert((*code).to_owned(), *count);
    }
    let report = Report {
        protocol: plan.args.protocol,
        concurrency: plan.args.concurrency,
        products: plan.args.products,
        distribution: plan.args.distribution.clone(),
        seconds: elapsed.as_secs_f64(),
        calls,
        calls_per_second: calls as f64 / elapsed.as_secs_f64(),
        ok,
        latency_ms: Latency::of(&latencies),
        served_latency_ms: Latency::of(&served),
        outcomes: by_op,
        verified,
        mismatches: mismatches.clone(),
    };
    if plan.args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_report(&report);
    }
    Ok(mismatches.is_empty())
}

fn print_report(report: &Report) {
    println!(
        "{:?} x{} over {} product(s) ({:?}): {} calls in {:.1} s = {:.0} calls/s, {} OK",
        report.protocol,
        report.concurrency,
        report.products,
        report.distribution,
        report.calls,
        report.seconds,
        report.calls_per_second,
        report.ok
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        report.latency_ms.p50, report.latency_ms.p90, report.latency_ms.p99, report.latency_ms.max
    );
    if report.served_latency_ms.max < report.latency_ms.max
        || report.served_latency_ms.p99 != report.latency_ms.p99
    {
        let served = &report.served_latency_ms;
        println!(
            "served (not shed) latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            served.p50, served.p90, served.p99, served.max
        );
    }
    for (op, codes) in &report.outcomes {
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  {op}: {}", codes.join(", "));
    }
    match report.verified {
        Some(products) if report.mismatches.is_empty() => {
            println!("check: {products} products match every acknowledged change")
        }
        Some(products) => {
            println!(
                "check FAILED: {} of {products} products differ from what was acknowledged:",
                report.mismatches.len()
            );
            for mismatch in report.mismatches.iter().take(20) {
                println!("  {mismatch}");
            }
        }
        None => println!("check: skipped (--no-verify)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let args = |line: &str| parse_args(line.split_whitespace().map(str::to_owned));
        let parsed = args(
            "--protocol rest --mix reserve=7,release=3 --distribution zipf:1.2 \
                           --quantity 1-3 --duration 250ms --requests 10",
        )
        .expect("valid")
        .expect("not help");
        assert_eq!(parsed.protocol, Protocol::Rest);
        assert_eq!(parsed.mix, [(Op::Reserve, 7), (Op::Release, 3)]);
        assert_eq!(parsed.distribution, Distribution::Zipf(1.2));
        assert_eq!(parsed.quantity, (1, 3));
        assert_eq!(parsed.duration, Duration::from_millis(250));
        assert_eq!(parsed.requests, Some(10));
        for bad in [
            "--mix fly=1",
            "--quantity 0",
            "--distribution pareto",
            "--duration 5x",
            "--nope",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
        assert!(args("--help").expect("help").is_none());
    }

    #[test]
    fn zipf_favours_the_first_products() {
        let picker = Picker::new(100, &Distribution::Zipf(1.0));
        let mut rng = Rng::new();
        let firsts = (0..10_000).filter(|_| picker.pick(&mut rng) < 10).count();
        assert!(firsts > 4_000, "{firsts}");
        let hot = Picker::new(100, &Distribution::Hot);
        assert_eq!(hot.pick(&mut rng), 0);
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let sorted: Vec<u32> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
    }
}
