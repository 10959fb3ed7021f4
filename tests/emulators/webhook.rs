//! A webhook receiver: records every request and answers from a script
//! (status codes, Retry-After, or hanging), like a real endpoint would.
//! It also counts requests in flight (peak, and any `webhook-id` in
//! flight twice at once), and can behave like a loaded server: slower the
//! more requests it holds, refusing with 503 beyond its capacity.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty JSON body.
    Status(u16),
    /// 429 with `Retry-After: seconds`.
    RetryAfter(u64),
    /// Never answer (until the client gives up).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

/// How a loaded receiver answers: it takes `base + per_request × (others
/// in flight)` per request, and answers 503 at once to a request beyond
/// `capacity` in flight.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub base: Duration,
    pub per_request: Duration,
    pub capacity: Option<usize>,
}

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    load: Load,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicUsize,
    ids_in_flight: Mutex<HashSet<String>>,
    /// A `webhook-id` arrived while a request with the same id was still
    /// in flight.
    overlaps: AtomicUsize,
    /// The window the last 429 told the client to keep quiet in (from
    /// the answer plus `IN_FLIGHT_GRACE`, until the Retry-After ends).
    quiet: Mutex<Option<(Instant, Instant)>>,
    /// Requests that arrived inside a Retry-After the receiver gave
    /// (after a grace of `IN_FLIGHT_GRACE` for requests already sent).
    early: AtomicUsize,
}

/// Requests arriving this soon after a 429 were already on their way.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(50);

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    /// Start on an ephemeral loopback port; answers 200 once `script` is used up.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        Self::start_with(script, Load::default()).await
    }

    /// Start a receiver that behaves like a loaded server.
    pub async fn start_loaded(load: Load) -> Receiver {
        Self::start_with(vec![], load).await
    }

    /// A loaded receiver that answers from `script` first.
    pub async fn start_scripted(script: Vec<Reply>, load: Load) -> Receiver {
        Self::start_with(script, load).await
    }

    async fn start_with(script: Vec<Reply>, load: Load) -> Receiver {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            load,
            ..Inner::default()
        });
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, inner }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Most requests ever in flight at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }

    /// Requests answered 503 for being beyond capacity.
    pub fn refused(&self) -> usize {
        self.inner.refused.load(Ordering::SeqCst)
    }

    /// Requests that arrived inside a Retry-After this receiver gave.
    pub fn early(&self) -> usize {
        self.inner.early.load(Ordering::SeqCst)
    }

    /// Times a `webhook-id` arrived while the same id was in flight.
    pub fn overlaps(&self) -> usize {
        self.inner.overlaps.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Counts a request in flight for as long as it is alive (also when the
/// client gives up and the handler is dropped).
struct InFlight {
    inner: Arc<Inner>,
    id: String,
    /// Others in flight when it arrived.
    others: usize,
}

impl InFlight {
    fn enter(inner: &Arc<Inner>, id: &str) -> InFlight {
        let others = inner.in_flight.fetch_add(1, Ordering::SeqCst);
        inner.peak.fetch_max(others + 1, Ordering::SeqCst);
        if !id.is_empty() && !inner.ids_in_flight.lock().unwrap().insert(id.to_owned()) {
            inner.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        InFlight {
            inner: inner.clone(),
            id: id.to_owned(),
            others,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.ids_in_flight.lock().unwrap().remove(&self.id);
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let flight = InFlight::enter(&inner, &id);
    let now = Instant::now();
    if let Some((from, until)) = *inner.quiet.lock().unwrap()
        && (from..until).contains(&now)
    {
        inner.early.fetch_add(1, Ordering::SeqCst);
    }
    inner.received.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let load = inner.load;
    if load.capacity.is_some_and(|c| flight.others >= c) {
        inner.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response();
    }
    let others = u32::try_from(flight.others).unwrap_or(u32::MAX);
    let took = load.base + load.per_request * others;
    if !took.is_zero() {
        tokio::time::sleep(took).await;
    }
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            (status, [("content-type", "application/json")], "{}").into_response()
        }
        Reply::RetryAfter(secs) => {
            let now = Instant::now();
            *inner.quiet.lock().unwrap() = Some((now + IN_FLIGHT_GRACE, now + Duration::from_secs(secs)));
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "slow down",
            )
                .into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}
