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
//!   preset's keep-alive are stopped.
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

#[derive(Debug, Clone, Copy)]
struct Use {
    last_used: Instant,
    in_flight: usize,
}

/// The gateway's state, shared by its listeners.
pub struct Gateway<B> {
    backend: Arc<B>,
    uses: Mutex<BTreeMap<String, Use>>,
    /// One residency decision (evict, then start) at a time.
    placing: tokio::sync::Mutex<()>,
    started: Instant,
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
            started: Instant::now(),
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

    fn begin(&self, model: &str) {
        let mut uses = self.uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let u = uses.entry(model.to_string()).or_insert(Use { last_used: Instant::now(), in_flight: 0 });
        u.in_flight += 1;
        u.last_used = Instant::now();
    }

    fn end(&self, model: &str) {
        let mut uses = self.uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(u) = uses.get_mut(model) {
            u.in_flight = u.in_flight.saturating_sub(1);
            u.last_used = Instant::now();
        }
    }

    /// The workers that are up, with their use.
    async fn resident(&self, view: &View) -> Vec<Resident> {
        let Ok(workers) = self.backend.workers().await else { return vec![] };
        let uses = self.uses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        view.models
            .iter()
            .filter(|m| workers.get(&m.unit).is_some_and(Worker::is_up))
            .map(|m| {
                let u = uses.get(&m.name).copied().unwrap_or(Use { last_used: self.started, in_flight: 0 });
                Resident { model: m.footprint.clone(), last_used: u.last_used, in_flight: u.in_flight }
            })
            .collect()
    }

    /// Stop workers idle past the keep-alive, on a timer.
    async fn unload_idle(self: Arc<Gateway<B>>) {
        loop {
            let view = self.backend.view().await;
            let tick = (view.keep_alive / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
            tokio::time::sleep(tick).await;
            let resident = self.resident(&view).await;
            for name in residency::idle(&resident, view.keep_alive, Instant::now()) {
                let Some(m) = view.models.iter().find(|m| m.name == name) else { continue };
                tracing::info!("gateway: {name} idle for {} s: unloading", view.keep_alive.as_secs());
                if let Err(e) = self.backend.stop(&m.unit).await {
                    tracing::warn!("gateway: {e}");
                }
            }
        }
    }

    async fn worker(&self, unit: &str) -> Result<Worker, BackendError> {
        Ok(self.backend.workers().await?.remove(unit).unwrap_or(Worker::Down))
    }

    /// Make sure the model's worker is up and ready, starting it (after making room) when
    /// it is not. The error says why it cannot serve.
    async fn ensure_running(&self, view: &View, m: &ModelRoute) -> Result<(), Unavailable> {
        let mut changes = self.backend.changes();
        match self.worker(&m.unit).await? {
            Worker::Running => return Ok(()),
            Worker::Invalid => return Err(invalid(m)),
            _ => {}
        }
        if let Some(why) = &m.blocked {
            return Err(Unavailable::Blocked(why.clone()));
        }
        {
            let _placing = self.placing.lock().await;
            if !matches!(self.worker(&m.unit).await?, Worker::Starting | Worker::Running) {
                let resident = self.resident(view).await;
                let evict = residency::evictions(&m.footprint, &resident, &view.budgets)?;
                for name in evict {
                    if let Some(other) = view.models.iter().find(|o| o.name == name) {
                        tracing::info!("gateway: unloading {name} (least recently used) to make room for {}", m.name);
                        self.stop_and_wait(&other.unit).await?;
                    }
                }
                tracing::info!("gateway: starting {} on demand", m.unit);
                self.backend.start(&m.unit).await?;
            }
        }
        let deadline = tokio::time::Instant::now() + view.start_timeout;
        loop {
            match self.worker(&m.unit).await? {
                Worker::Running => return Ok(()),
                Worker::Invalid => return Err(invalid(m)),
                Worker::Failed(why) => return Err(Unavailable::Failed { unit: m.unit.clone(), why }),
                _ => {}
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => {
                    return Err(Unavailable::NotReady { unit: m.unit.clone(), secs: view.start_timeout.as_secs() })
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Err(Unavailable::SupervisorGone),
                Ok(_) => {}
            }
        }
    }

    async fn stop_and_wait(&self, unit: &str) -> Result<(), Unavailable> {
        let mut changes = self.backend.changes();
        self.backend.stop(unit).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if !self.worker(unit).await?.is_up() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changes.recv()).await.is_err() {
                return Err(Unavailable::NotStopped { unit: unit.to_string(), secs: 60 });
            }
        }
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
    let cloud_ok = path.starts_with("/v1/") && view.cloud.is_some();
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
                if let Err(e) = g.ensure_running(&view, m).await {
                    tracing::warn!("gateway: {}: {e}", m.name);
                    why.push(e.to_string());
                    continue;
                }
                g.begin(&m.name);
                match upstream::to_worker(&m.socket, method.clone(), &path, &headers, body.clone()).await {
                    Ok(resp) => {
                        let (mut parts, incoming) = resp.into_parts();
                        let (gw, name) = (g.clone(), m.name.clone());
                        let body = Body::new(Tracked::new(incoming, move || gw.end(&name)));
                        if let Ok(v) = HeaderValue::from_str(&format!("local:{}", m.name)) {
                            parts.headers.insert("x-aither-route", v);
                        }
                        return Response::from_parts(parts, body);
                    }
                    Err(e) => {
                        g.end(&m.name);
                        why.push(e.to_string());
                    }
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
mod tests {
    use super::*;
    use tokio::sync::broadcast;

    /// A backend whose workers do what the test says when started.
    struct Fake {
        view: Arc<View>,
        workers: Mutex<BTreeMap<String, Worker>>,
        /// What a worker becomes when started.
        on_start: Worker,
        started: Mutex<Vec<String>>,
        stopped: Mutex<Vec<String>>,
        changes: broadcast::Sender<String>,
    }

    impl Fake {
        fn set(&self, unit: &str, w: Worker) {
            self.workers.lock().expect("lock").insert(unit.to_string(), w);
            let _ = self.changes.send(unit.to_string());
        }
    }

    impl Backend for Fake {
        async fn view(&self) -> Arc<View> {
            self.view.clone()
        }
        async fn workers(&self) -> Result<BTreeMap<String, Worker>, BackendError> {
            Ok(self.workers.lock().expect("lock").clone())
        }
        async fn start(&self, unit: &str) -> Result<(), BackendError> {
            self.started.lock().expect("lock").push(unit.to_string());
            self.set(unit, self.on_start.clone());
            Ok(())
        }
        async fn stop(&self, unit: &str) -> Result<(), BackendError> {
            self.stopped.lock().expect("lock").push(unit.to_string());
            self.set(unit, Worker::Down);
            Ok(())
        }
        fn changes(&self) -> broadcast::Receiver<String> {
            self.changes.subscribe()
        }
    }

    fn route(name: &str, gib: u64, blocked: Option<&str>) -> ModelRoute {
        ModelRoute {
            name: name.into(),
            role: "chat".into(),
            unit: format!("infer-{name}"),
            socket: PathBuf::from(format!("/run/aither/infer/{name}.sock")),
            footprint: Footprint {
                name: name.into(),
                vram: BTreeMap::from([("0000:01:00.0".to_string(), gib << 30)]),
                pinned: false,
            },
            blocked: blocked.map(str::to_string),
        }
    }

    #[test]
    fn a_role_resolves_to_its_model_and_code_falls_back_to_chat() {
        let mut embed = route("minilm", 1, None);
        embed.role = "embedding".into();
        let view = View {
            preset: "minimal".into(),
            models: vec![route("qwen", 4, None), embed],
            budgets: BTreeMap::new(),
            cloud: None,
            api_key: None,
            keep_alive: Duration::from_secs(300),
            start_timeout: Duration::from_millis(300),
        };
        let name = |m: Option<&str>, e: bool| resolve(&view, m, e).map(|r| r.name.clone());
        assert_eq!(name(None, false).as_deref(), Some("qwen"));
        assert_eq!(name(None, true).as_deref(), Some("minilm"));
        assert_eq!(name(Some("code"), false).as_deref(), Some("qwen"), "no code model: the chat model");
        assert_eq!(name(Some("gpt-4o"), false), None, "another name goes to the cloud fallback");
    }

    fn gateway(models: Vec<ModelRoute>, workers: &[(&str, Worker)], on_start: Worker) -> Arc<Gateway<Fake>> {
        let view = View {
            preset: "minimal".into(),
            models,
            budgets: BTreeMap::from([("0000:01:00.0".to_string(), 10 << 30)]),
            cloud: None,
            api_key: None,
            keep_alive: Duration::from_secs(300),
            start_timeout: Duration::from_millis(300),
        };
        let fake = Fake {
            view: Arc::new(view),
            workers: Mutex::new(workers.iter().map(|(u, w)| ((*u).to_string(), w.clone())).collect()),
            on_start,
            started: Mutex::new(vec![]),
            stopped: Mutex::new(vec![]),
            changes: broadcast::channel(64).0,
        };
        Gateway::new(Arc::new(fake))
    }

    async fn ensure(g: &Arc<Gateway<Fake>>, name: &str) -> Result<(), Unavailable> {
        let view = g.backend.view().await;
        let m = view.models.iter().find(|m| m.name == name).expect("route").clone();
        g.ensure_running(&view, &m).await
    }

    #[test]
    fn a_get_names_its_model_in_the_query() {
        assert_eq!(query_model(Some("model=chat")), Some("chat".into()));
        assert_eq!(query_model(Some("fail_on_no_slot=1&model=qwen")), Some("qwen".into()));
        assert_eq!(query_model(Some("x=1")), None);
        assert_eq!(query_model(None), None);
    }

    #[tokio::test]
    async fn a_running_worker_serves_at_once_and_a_dormant_one_is_started_and_awaited() {
        let g = gateway(
            vec![route("a", 4, None), route("b", 4, None)],
            &[("infer-a", Worker::Running), ("infer-b", Worker::Down)],
            Worker::Running,
        );
        ensure(&g, "a").await.expect("running");
        assert!(g.backend.started.lock().expect("lock").is_empty());
        ensure(&g, "b").await.expect("started");
        assert_eq!(*g.backend.started.lock().expect("lock"), ["infer-b"]);
    }

    #[tokio::test]
    async fn a_blocked_or_invalid_model_says_why_and_nothing_starts() {
        let g = gateway(
            vec![route("a", 4, Some("model file /m/a.gguf is missing")), route("b", 4, None)],
            &[("infer-a", Worker::Down), ("infer-b", Worker::Invalid)],
            Worker::Running,
        );
        let e = ensure(&g, "a").await.expect_err("blocked");
        assert!(matches!(e, Unavailable::Blocked(ref why) if why == "model file /m/a.gguf is missing"), "{e}");
        let e = ensure(&g, "b").await.expect_err("invalid");
        assert!(matches!(e, Unavailable::InvalidModel { ref unit, .. } if unit == "infer-b"), "{e}");
        assert!(e.to_string().contains("aitherctl logs infer-b"), "{e}");
        assert!(g.backend.started.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_worker_that_fails_or_never_comes_up_is_reported() {
        let g = gateway(vec![route("a", 4, None)], &[], Worker::Failed("exited with status 1".into()));
        let e = ensure(&g, "a").await.expect_err("failed");
        assert!(matches!(e, Unavailable::Failed { ref why, .. } if why == "exited with status 1"), "{e}");
        assert_eq!(e.to_string(), "infer-a failed to start: exited with status 1");
        let g = gateway(vec![route("a", 4, None)], &[], Worker::Starting);
        let e = ensure(&g, "a").await.expect_err("timeout");
        assert!(matches!(e, Unavailable::NotReady { ref unit, .. } if unit == "infer-a"), "{e}");
    }

    #[tokio::test]
    async fn room_is_made_by_stopping_the_least_recently_used_idle_worker() {
        // The budget is 10 GiB: a (6) is loaded, b (6) needs it gone.
        let g = gateway(
            vec![route("a", 6, None), route("b", 6, None)],
            &[("infer-a", Worker::Running), ("infer-b", Worker::Down)],
            Worker::Running,
        );
        ensure(&g, "b").await.expect("room made");
        assert_eq!(*g.backend.stopped.lock().expect("lock"), ["infer-a"]);
        assert_eq!(*g.backend.started.lock().expect("lock"), ["infer-b"]);
        // In use, a is never evicted: b cannot be placed.
        let g = gateway(
            vec![route("a", 6, None), route("b", 6, None)],
            &[("infer-a", Worker::Running), ("infer-b", Worker::Down)],
            Worker::Running,
        );
        g.begin("a");
        assert!(matches!(ensure(&g, "b").await, Err(Unavailable::NoRoom(_))), "no room while a is busy");
        assert!(g.backend.stopped.lock().expect("lock").is_empty());
    }
}
