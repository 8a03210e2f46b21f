//! The gateway: the appliance's OpenAI-compatible front door (`127.0.0.1:8080` and
//! `/run/aither/gateway.sock` by default).
//!
//! - **Routing** by the request's `model`: a model of the plan by name (or its role:
//!   `chat`, `embedding`, `code`; no model means the chat model, or the embedding model for
//!   `/v1/embeddings`) goes to its worker's Unix socket; anything else goes to the cloud
//!   fallback when one is configured, else 404 with the models there are.
//! - **On demand**: a dormant worker is started by the first request for it, which waits
//!   (up to `gateway.start_timeout_seconds`) until the worker says READY.
//! - **Residency**: before a worker starts, the models already loaded must leave room in
//!   the VRAM budget (the plan's budget per GPU); the least recently used unpinned, idle
//!   ones are stopped first, pinned ones never ([`residency`]). Workers idle longer than the
//!   preset's keep-alive are stopped. A request holds its model (`InUse`) from before its
//!   worker is started to the end of its answer, so neither stops a worker it waits for.
//! - **Cloud fallback** (`[cloud]` in agentd.toml, key from its `api_key_file`): when no
//!   local model serves the request (unknown, missing file, invalid, failed to start), and
//!   first on the `cpu-only` preset, where the local model is the fallback.
//! - **Pass-through**: request bodies are read whole (they are small); response bodies are
//!   relayed frame by frame as the worker writes them, so streams are not buffered.
//!   `TCP_NODELAY` on every TCP connection.
//! - **Keys**: TCP clients must send `Authorization: Bearer KEY` with the key of
//!   `gateway.api_key_file`, loopback included (the configuration refuses TCP without a key
//!   unless `allow_tcp_without_key` opts out, for loopback only); the Unix socket is guarded
//!   by its owner, group (`socket_group`, mode 0660) and SELinux. Key files are read when the
//!   configuration is loaded, and one that cannot be read stops agentd or refuses the reload.
//! - **The front door** ([`aither_http`]): header, body and idle timeouts and a connection
//!   cap shared by every listener, `Host` limited to names of this machine, JSON bodies
//!   only, no CORS headers. Its counters are at `GET /metrics`.
//!
//! Every response says where it was served: `x-aither-route: local:NAME` or `cloud`.

pub mod residency;
pub mod upstream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use aither_http::keys::Secret;
use aither_http::{Front, Listener};

use crate::config::{Listen, Settings};
use residency::{Footprint, Resident};
use upstream::{CloudTarget, Tracked};

/// A model the gateway can route to.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub name: String,
    pub role: String,
    /// The worker unit (`infer-NAME`).
    pub unit: String,
    pub socket: PathBuf,
    pub footprint: Footprint,
    /// Why the worker cannot start (its model file is missing).
    pub blocked: Option<String>,
}

/// What the gateway needs of the daemon's current configuration.
#[derive(Debug, Clone)]
pub struct View {
    pub preset: String,
    pub models: Vec<ModelRoute>,
    /// VRAM for models per GPU (PCI address).
    pub budgets: BTreeMap<String, u64>,
    pub cloud: Option<CloudTarget>,
    /// The key TCP clients must send; `None` only with `allow_tcp_without_key`.
    pub api_key: Option<Secret>,
    pub keep_alive: Duration,
    pub start_timeout: Duration,
}

/// A worker's state, as the gateway needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Worker {
    /// Not running; starting it is the way to serve.
    Down,
    /// Asked to run but not spawned now: waiting for what it is ordered after, or for its
    /// restart after it ended.
    Pending,
    Starting,
    Running,
    /// Still holding its memory on the way down.
    Stopping,
    /// Its model file is not a usable model: it will not be restarted.
    Invalid,
    /// It ended and will not come back by itself; why.
    Failed(String),
}

impl Worker {
    /// It holds its model in memory.
    fn is_up(&self) -> bool {
        matches!(self, Worker::Starting | Worker::Running | Worker::Stopping)
    }
}

/// The daemon could not answer or act (its own error, boxed: the gateway only reports it).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError(Box::new(e))
    }
}

/// Why a local model cannot serve a request now.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The plan holds it back (a missing file, no room in the preset); the plan's words.
    #[error("{0}")]
    Blocked(String),
    #[error("the model file of {model} is invalid; see `aitherctl logs {unit}`")]
    InvalidModel { model: String, unit: String },
    #[error(transparent)]
    NoRoom(#[from] residency::NoRoom),
    #[error("{unit} failed to start: {why}")]
    Failed { unit: String, why: String },
    #[error("{unit} did not become ready within {secs} s")]
    NotReady { unit: String, secs: u64 },
    #[error("{0} was stopped before it was ready")]
    Stopped(String),
    #[error("{unit} did not stop within {secs} s")]
    NotStopped { unit: String, secs: u64 },
    #[error("the supervisor has stopped")]
    SupervisorGone,
}

/// What the gateway needs of the daemon, and nothing more: the routing view, the workers'
/// states, starting and stopping one, and word of any change.
pub trait Backend: Send + Sync + 'static {
    /// What the gateway routes by, as of the last configuration load.
    fn view(&self) -> impl std::future::Future<Output = Arc<View>> + Send;
    /// The state of every worker unit, by unit name.
    fn workers(&self) -> impl std::future::Future<Output = Result<BTreeMap<String, Worker>, BackendError>> + Send;
    fn start(&self, unit: &str) -> impl std::future::Future<Output = Result<(), BackendError>> + Send;
    fn stop(&self, unit: &str) -> impl std::future::Future<Output = Result<(), BackendError>> + Send;
    /// Unit names, as their state changes.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<String>;
}

/// A model's use, as the keep-alive counts it.
#[derive(Debug, Clone, Copy)]
struct Use {
    /// The last request's end, or when the gateway first saw the worker up.
    last_used: Instant,
    /// Requests for it, from before its worker is started to the end of their answers.
    in_flight: usize,
    /// The keep-alive has run out and its worker is being stopped: a request that comes now
    /// waits for the stop and starts it again, rather than reach a worker on its way down.
    unloading: bool,
}

/// A request's hold on its model: while it lives, the model is busy (never unloaded, never
/// evicted), and its end counts as the model's last use.
pub(crate) struct InUse<B: Backend> {
    gateway: Arc<Gateway<B>>,
    model: String,
}

impl<B: Backend> Drop for InUse<B> {
    fn drop(&mut self) {
        let mut uses = self.gateway.uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(u) = uses.get_mut(&self.model) {
            u.in_flight = u.in_flight.saturating_sub(1);
            u.last_used = Instant::now();
        }
    }
}

/// The gateway's state, shared by its listeners.
pub struct Gateway<B> {
    backend: Arc<B>,
    uses: Mutex<BTreeMap<String, Use>>,
    /// One residency decision (evict, then start) at a time.
    placing: tokio::sync::Mutex<()>,
    /// Told when an unload ends (see [`Use::unloading`]).
    unloaded: tokio::sync::Notify,
    /// The listeners' limits and counters, set when they start.
    front: std::sync::OnceLock<Front>,
    /// Turned true to close the listeners ([`Gateway::close`]).
    stop: tokio::sync::watch::Sender<bool>,
}

impl<B> std::fmt::Debug for Gateway<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// An OpenAI-style error.
fn error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": kind, "param": null, "code": code } });
    (status, Json(body)).into_response()
}

/// Which listener a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Unix,
}

impl<B: Backend> Gateway<B> {
    pub fn new(backend: Arc<B>) -> Arc<Gateway<B>> {
        Arc::new(Gateway {
            backend,
            uses: Mutex::new(BTreeMap::new()),
            placing: tokio::sync::Mutex::new(()),
            unloaded: tokio::sync::Notify::new(),
            front: std::sync::OnceLock::new(),
            stop: tokio::sync::watch::channel(false).0,
        })
    }

    fn router(self: &Arc<Gateway<B>>, via: Via) -> Router {
        let g = self.clone();
        Router::new()
            .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
            .route("/v1/models", get(models::<B>))
            .route("/v1/chat/completions", post(proxy::<B>))
            .route("/v1/completions", post(proxy::<B>))
            .route("/v1/embeddings", post(proxy::<B>))
            .route("/v1/responses", post(proxy::<B>))
            // llama-server's own routes: local workers only (no cloud has them).
            .route("/completion", post(proxy::<B>))
            .route("/v1/chat/completions/input_tokens", post(proxy::<B>))
            .route("/chat/completions/input_tokens", post(proxy::<B>))
            .route("/tokenize", post(proxy::<B>))
            .route("/detokenize", post(proxy::<B>))
            .route("/apply-template", post(proxy::<B>))
            .route("/embedding", post(proxy::<B>))
            .route("/embeddings", post(proxy::<B>))
            .route("/props", get(proxy::<B>))
            .route("/slots", get(proxy::<B>))
            .route("/metrics", get(metrics::<B>))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "invalid_request_error", "not_found", "no such route") })
            .layer(axum::Extension(via))
            .with_state(g)
    }

    /// Listen on every configured address, behind one front door (`settings`' limits, its
    /// allowed hosts), and serve until the process ends. A listener that cannot bind, or a
    /// socket group that does not exist, is an error naming it. `socket_gid`: the group the
    /// Unix socket is handed to (`None` in development mode: the user's own, mode 0600).
    pub async fn listen(self: &Arc<Gateway<B>>, settings: &Settings, socket_gid: Option<u32>) -> anyhow::Result<()> {
        use anyhow::Context as _;
        use std::os::unix::fs::PermissionsExt as _;
        let front = Front::new(settings.gateway_limits);
        let policy = aither_http::guard::Policy {
            hosts: aither_http::guard::HostPolicy::new(&settings.gateway_allowed_hosts),
            limits: settings.gateway_limits,
        };
        let stop = self.stop.subscribe();
        for addr in &settings.gateway_listen {
            let (listener, via) = match addr {
                Listen::Tcp(a) => {
                    let l = tokio::net::TcpListener::bind(a)
                        .await
                        .with_context(|| format!("gateway: cannot listen on {a}"))?;
                    (Listener::Tcp(l), Via::Tcp)
                }
                Listen::Unix(p) => {
                    if let Some(dir) = p.parent() {
                        std::fs::create_dir_all(dir).with_context(|| format!("gateway: {}", dir.display()))?;
                    }
                    let _ = std::fs::remove_file(p);
                    // At s0 rather than agentd's whole range: agents run at their own category
                    // pair, and MCS lets a process connect only to sockets its level dominates.
                    let low = (socket_gid.is_some() && aither_sys::selinux::enabled(std::path::Path::new("/sys")))
                        .then(|| aither_sys::selinux::current_context(std::path::Path::new("/proc")).ok())
                        .flatten()
                        .and_then(|c| aither_sys::selinux::at_level(&c, "s0"));
                    let l = aither_sys::selinux::with_socket_context(low.as_deref(), || {
                        let l = std::os::unix::net::UnixListener::bind(p)?;
                        l.set_nonblocking(true)?;
                        tokio::net::UnixListener::from_std(l)
                    })
                    .with_context(|| format!("gateway: cannot listen on {}", p.display()))?;
                    // Who may connect: the owner and the socket group (agents), nobody else.
                    let mode = if socket_gid.is_some() { 0o660 } else { 0o600 };
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                        .with_context(|| format!("gateway: chmod {}", p.display()))?;
                    if let Some(gid) = socket_gid {
                        std::os::unix::fs::chown(p, None, Some(gid))
                            .with_context(|| format!("gateway: chown {} to group {gid}", p.display()))?;
                    }
                    (Listener::Unix(l), Via::Unix)
                }
            };
            let app = aither_http::guard::apply(self.router(via), policy.clone());
            let (front, stop) = (front.clone(), stop.clone());
            tokio::spawn(async move { front.serve(listener, app, stop).await });
            tracing::info!("gateway: listening on {}", addr_text(addr));
        }
        let _ = self.front.set(front);
        let g = self.clone();
        tokio::spawn(async move { g.unload_idle().await });
        Ok(())
    }

    /// Stop accepting; requests in flight finish.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    fn uses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Use>> {
        self.uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mark `model` busy until the hold is dropped: taken before its worker is started, so
    /// that the keep-alive and evictions never stop a worker a request is waiting for.
    pub(crate) fn hold(self: &Arc<Gateway<B>>, model: &str) -> InUse<B> {
        let now = Instant::now();
        let mut uses = self.uses();
        let u = uses.entry(model.to_string()).or_insert(Use { last_used: now, in_flight: 0, unloading: false });
        u.in_flight += 1;
        u.last_used = now;
        InUse { gateway: self.clone(), model: model.to_string() }
    }

    fn unloading(&self, model: &str) -> bool {
        self.uses().get(model).is_some_and(|u| u.unloading)
    }

    /// The workers that are up, with their use. A worker seen up with no use yet (started
    /// by `aitherctl start`, or at boot) counts as used now; a worker seen down forgets its
    /// use, so that its next start gets a whole keep-alive.
    async fn resident(&self, view: &View) -> Vec<Resident> {
        let Ok(workers) = self.backend.workers().await else { return vec![] };
        let now = Instant::now();
        let mut uses = self.uses();
        let mut out = Vec::new();
        for m in &view.models {
            if !workers.get(&m.unit).is_some_and(Worker::is_up) {
                if uses.get(&m.name).is_some_and(|u| u.in_flight == 0 && !u.unloading) {
                    uses.remove(&m.name);
                }
                continue;
            }
            let u = *uses.entry(m.name.clone()).or_insert(Use { last_used: now, in_flight: 0, unloading: false });
            out.push(Resident { model: m.footprint.clone(), last_used: u.last_used, in_flight: u.in_flight });
        }
        out
    }

    /// Stop workers idle past the keep-alive, on a timer.
    async fn unload_idle(self: Arc<Gateway<B>>) {
        loop {
            let view = self.backend.view().await;
            let tick = (view.keep_alive / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
            tokio::time::sleep(tick).await;
            self.unload_idle_now(&view).await;
        }
    }

    /// Stop the workers idle past the keep-alive now. Each is marked unloading under the
    /// same lock a request takes its hold under, so a request either keeps it up or waits
    /// for its stop and starts it again.
    async fn unload_idle_now(&self, view: &View) {
        let resident = self.resident(view).await;
        for name in residency::idle(&resident, view.keep_alive, Instant::now()) {
            let Some(m) = view.models.iter().find(|m| m.name == name) else { continue };
            if !self.mark_unloading(&name, Some(view.keep_alive)) {
                continue;
            }
            tracing::info!("gateway: {name} idle for {} s: unloading", view.keep_alive.as_secs());
            if let Err(e) = self.unload(m).await {
                tracing::warn!("gateway: {e}");
            }
        }
    }

    /// Mark `model` as being unloaded, unless a request holds it (or, with `idle_for`, it
    /// was used more recently than that) by now.
    fn mark_unloading(&self, model: &str, idle_for: Option<Duration>) -> bool {
        let mut uses = self.uses();
        let Some(u) = uses.get_mut(model) else { return false };
        if u.unloading || u.in_flight > 0 || idle_for.is_some_and(|d| u.last_used.elapsed() < d) {
            return false;
        }
        u.unloading = true;
        true
    }

    /// Stop a worker marked unloading, and wait until it is down.
    async fn unload(&self, m: &ModelRoute) -> Result<(), Unavailable> {
        let done = self.stop_and_wait(&m.unit).await;
        if let Some(u) = self.uses().get_mut(&m.name) {
            u.unloading = false;
        }
        self.unloaded.notify_waiters();
        done
    }

    async fn worker(&self, unit: &str) -> Result<Worker, BackendError> {
        Ok(self.backend.workers().await?.remove(unit).unwrap_or(Worker::Down))
    }

    /// Make sure the model's worker is up and ready, starting it (after making room) when
    /// it is not. The error says why it cannot serve.
    async fn ensure_running(&self, view: &View, m: &ModelRoute) -> Result<(), Unavailable> {
        let mut changes = self.backend.changes();
        match self.worker(&m.unit).await? {
            Worker::Running if !self.unloading(&m.name) => return Ok(()),
            Worker::Invalid => return Err(invalid(m)),
            _ => {}
        }
        if let Some(why) = &m.blocked {
            return Err(Unavailable::Blocked(why.clone()));
        }
        let deadline = tokio::time::Instant::now() + view.start_timeout;
        let not_ready = || Unavailable::NotReady { unit: m.unit.clone(), secs: view.start_timeout.as_secs() };
        // Its keep-alive ran out as the request came: it starts again once it is down.
        self.wait_unloaded(&m.name, deadline).await.map_err(|()| not_ready())?;
        {
            let _placing = self.placing.lock().await;
            if !matches!(self.worker(&m.unit).await?, Worker::Starting | Worker::Running) {
                self.make_room(view, m, deadline).await.map_err(|e| e.unwrap_or_else(not_ready))?;
                tracing::info!("gateway: starting {} on demand", m.unit);
                self.backend.start(&m.unit).await?;
            }
        }
        let mut seen_up = false;
        loop {
            match self.worker(&m.unit).await? {
                Worker::Running => return Ok(()),
                Worker::Invalid => return Err(invalid(m)),
                Worker::Failed(why) => return Err(Unavailable::Failed { unit: m.unit.clone(), why }),
                Worker::Starting => seen_up = true,
                Worker::Down | Worker::Stopping if seen_up => return Err(Unavailable::Stopped(m.unit.clone())),
                Worker::Down | Worker::Stopping | Worker::Pending => {}
            }
            next_change(&mut changes, deadline).await?.ok_or_else(not_ready)?;
        }
    }

    /// Stop the least recently used idle workers until `m` fits the VRAM budget. `None`:
    /// the deadline passed while another unload of the same worker went on.
    async fn make_room(
        &self,
        view: &View,
        m: &ModelRoute,
        deadline: tokio::time::Instant,
    ) -> Result<(), Option<Unavailable>> {
        loop {
            let resident = self.resident(view).await;
            let evict = residency::evictions(&m.footprint, &resident, &view.budgets).map_err(|e| Some(e.into()))?;
            let Some(other) = evict.first().and_then(|name| view.models.iter().find(|o| &o.name == name)) else {
                return Ok(());
            };
            if self.unloading(&other.name) {
                self.wait_unloaded(&other.name, deadline).await.map_err(|()| None)?;
            } else if self.mark_unloading(&other.name, None) {
                tracing::info!("gateway: unloading {} (least recently used) to make room for {}", other.name, m.name);
                self.unload(other).await.map_err(Some)?;
            }
            // Else a request has taken it since: the next round chooses again.
        }
    }

    /// Wait until `model` is not being unloaded; `Err` at the deadline.
    async fn wait_unloaded(&self, model: &str, deadline: tokio::time::Instant) -> Result<(), ()> {
        loop {
            let unloaded = self.unloaded.notified();
            tokio::pin!(unloaded);
            unloaded.as_mut().enable();
            if !self.unloading(model) {
                return Ok(());
            }
            tokio::time::timeout_at(deadline, unloaded).await.map_err(|_| ())?;
        }
    }

    async fn stop_and_wait(&self, unit: &str) -> Result<(), Unavailable> {
        let mut changes = self.backend.changes();
        self.backend.stop(unit).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.worker(unit).await?.is_up() {
            next_change(&mut changes, deadline)
                .await?
                .ok_or_else(|| Unavailable::NotStopped { unit: unit.to_string(), secs: 60 })?;
        }
        Ok(())
    }
}

/// Wait for the next change of any worker: `None` at the deadline.
async fn next_change(
    changes: &mut tokio::sync::broadcast::Receiver<String>,
    deadline: tokio::time::Instant,
) -> Result<Option<()>, Unavailable> {
    match tokio::time::timeout_at(deadline, changes.recv()).await {
        Err(_) => Ok(None),
        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => Err(Unavailable::SupervisorGone),
        Ok(_) => Ok(Some(())),
    }
}

/// Why a model whose worker refused its file cannot serve.
fn invalid(m: &ModelRoute) -> Unavailable {
    Unavailable::InvalidModel { model: m.name.clone(), unit: m.unit.clone() }
}

fn addr_text(l: &Listen) -> String {
    match l {
        Listen::Tcp(a) => a.to_string(),
        Listen::Unix(p) => format!("unix:{}", p.display()),
    }
}

/// TCP clients must send `Authorization: Bearer KEY` (there is always a key, unless the
/// admin opted out for loopback); the Unix socket is authorized by its permissions.
fn authorized(view: &View, via: Via, headers: &HeaderMap) -> bool {
    match (&view.api_key, via) {
        (_, Via::Unix) | (None, Via::Tcp) => true,
        (Some(key), Via::Tcp) => key.matches_bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())),
    }
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "invalid_api_key",
        "a valid API key is required: Authorization: Bearer KEY",
    )
}

async fn models<B: Backend>(
    State(g): State<Arc<Gateway<B>>>,
    axum::Extension(via): axum::Extension<Via>,
    headers: HeaderMap,
) -> Response {
    let view = g.backend.view().await;
    if !authorized(&view, via, &headers) {
        return unauthorized();
    }
    let workers = g.backend.workers().await.unwrap_or_default();
    let mut data: Vec<serde_json::Value> = view
        .models
        .iter()
        .map(|m| {
            let state = match workers.get(&m.unit) {
                None => "unknown",
                Some(Worker::Running) => "loaded",
                Some(Worker::Starting) => "loading",
                Some(_) if m.blocked.is_some() => "missing",
                Some(_) => "available",
            };
            // The role is an alias: `"model": "chat"` routes to this model.
            json!({ "id": m.name, "object": "model", "owned_by": "aitheros", "created": 0, "aliases": [m.role],
                    "meta": { "role": m.role, "state": state, "pinned": m.footprint.pinned } })
        })
        .collect();
    if let Some(c) = &view.cloud {
        data.push(
            json!({ "id": c.model.clone().unwrap_or_else(|| "cloud".into()), "object": "model", "owned_by": "cloud",
                          "created": 0, "meta": { "role": "fallback", "endpoint": c.endpoint } }),
        );
    }
    Json(json!({ "object": "list", "data": data })).into_response()
}

/// The front door's counters (connections, shed, timeouts) in Prometheus' text format.
async fn metrics<B: Backend>(
    State(g): State<Arc<Gateway<B>>>,
    axum::Extension(via): axum::Extension<Via>,
    headers: HeaderMap,
) -> Response {
    let view = g.backend.view().await;
    if !authorized(&view, via, &headers) {
        return unauthorized();
    }
    let body = g.front.get().map(|f| f.stats().prometheus("aither_gateway_http")).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[derive(serde::Deserialize)]
struct Peek {
    model: Option<String>,
}

/// `model=NAME` of a query string (names of the plan are plain tokens: no decoding).
fn query_model(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| kv.strip_prefix("model=")).map(str::to_string)
}

enum Target<'a> {
    Local(&'a ModelRoute),
    Cloud,
}

fn resolve<'a>(view: &'a View, model: Option<&str>, embeddings: bool) -> Option<&'a ModelRoute> {
    match model {
        None | Some("") => {
            let role = if embeddings { "embedding" } else { "chat" };
            view.models.iter().find(|m| m.role == role)
        }
        Some(name) => view
            .models
            .iter()
            .find(|m| m.name == name)
            .or_else(|| view.models.iter().find(|m| m.role == name))
            // A preset without a code model answers the code role with its chat model.
            .or_else(|| (name == "code").then(|| view.models.iter().find(|m| m.role == "chat")).flatten()),
    }
}

async fn proxy<B: Backend>(
    State(g): State<Arc<Gateway<B>>>,
    axum::Extension(via): axum::Extension<Via>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let view = g.backend.view().await;
    if !authorized(&view, via, &headers) {
        return unauthorized();
    }
    let path = uri.path().to_string();
    // A GET (llama-server's /props, /slots) names its model in the query: `?model=NAME`.
    let peek = if method == Method::GET {
        Peek { model: query_model(uri.query()) }
    } else {
        match serde_json::from_slice::<Peek>(&body) {
            Ok(p) => p,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_json",
                    format!("invalid JSON body: {e}"),
                )
            }
        }
    };
    let embeddings = matches!(path.as_str(), "/v1/embeddings" | "/embedding" | "/embeddings");
    let local = resolve(&view, peek.model.as_deref(), embeddings);
    // llama-server's own routes (and its token count under /v1/) are the local workers' only.
    let cloud_ok = path.starts_with("/v1/") && !path.ends_with("/input_tokens") && view.cloud.is_some();
    // cpu-only: the cloud first, the local model as its fallback.
    let mut order: Vec<Target> = Vec::with_capacity(2);
    if view.preset == "cpu-only" && cloud_ok {
        order.push(Target::Cloud);
    }
    if let Some(m) = local {
        order.push(Target::Local(m));
    }
    if cloud_ok && !order.iter().any(|t| matches!(t, Target::Cloud)) {
        order.push(Target::Cloud);
    }
    if order.is_empty() {
        let names: Vec<&str> = view.models.iter().map(|m| m.name.as_str()).collect();
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "no model {:?} here and {}; models: {}",
                peek.model.unwrap_or_default(),
                if path.starts_with("/v1/") {
                    "no cloud fallback is configured"
                } else {
                    "llama-server's routes are served by local models only"
                },
                names.join(", ")
            ),
        );
    }
    let mut why = Vec::new();
    for (i, target) in order.iter().enumerate() {
        let last = i + 1 == order.len();
        match target {
            Target::Local(m) => {
                let held = g.hold(&m.name);
                if let Err(e) = g.ensure_running(&view, m).await {
                    tracing::warn!("gateway: {}: {e}", m.name);
                    why.push(e.to_string());
                    continue;
                }
                match upstream::to_worker(&m.socket, method.clone(), &path, &headers, body.clone()).await {
                    Ok(resp) => {
                        let (mut parts, incoming) = resp.into_parts();
                        let body = Body::new(Tracked::new(incoming, move || drop(held)));
                        if let Ok(v) = HeaderValue::from_str(&format!("local:{}", m.name)) {
                            parts.headers.insert("x-aither-route", v);
                        }
                        return Response::from_parts(parts, body);
                    }
                    Err(e) => why.push(e.to_string()),
                }
            }
            Target::Cloud => {
                let Some(cloud) = &view.cloud else { continue };
                let sub = path.strip_prefix("/v1").unwrap_or(&path);
                match upstream::to_cloud(cloud, sub, body.clone()).await {
                    // A server error from the cloud falls through to the local model when there
                    // is one, and is reported with the local model's reason when both failed.
                    Ok(resp) if resp.status().is_server_error() && (!last || !why.is_empty()) => {
                        why.push(format!("the cloud answered {}", resp.status()));
                    }
                    Ok(mut resp) => {
                        resp.headers_mut().insert("x-aither-route", HeaderValue::from_static("cloud"));
                        return resp;
                    }
                    Err(e) => why.push(e.to_string()),
                }
            }
        }
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "unavailable",
        format!("no backend could serve this request: {}", why.join("; ")),
    )
}

#[cfg(test)]
mod tests;
