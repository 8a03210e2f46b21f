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
    gateway_keeping(models, workers, on_start, Duration::from_secs(300))
}

fn gateway_keeping(
    models: Vec<ModelRoute>,
    workers: &[(&str, Worker)],
    on_start: Worker,
    keep_alive: Duration,
) -> Arc<Gateway<Fake>> {
    let view = View {
        preset: "minimal".into(),
        models,
        budgets: BTreeMap::from([("0000:01:00.0".to_string(), 10 << 30)]),
        cloud: None,
        api_key: None,
        keep_alive,
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
    let _busy = g.hold("a");
    assert!(matches!(ensure(&g, "b").await, Err(Unavailable::NoRoom(_))), "no room while a is busy");
    assert!(g.backend.stopped.lock().expect("lock").is_empty());
}

/// [`ensure`] on its own task, as a request waiting for its worker.
fn ensure_in_background(
    g: &Arc<Gateway<Fake>>,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<(), Unavailable>> {
    let g = g.clone();
    tokio::spawn(async move { ensure(&g, name).await })
}

/// Wait (briefly) until the fake backend was asked to start `unit`.
async fn started(g: &Arc<Gateway<Fake>>, unit: &str) {
    for _ in 0..200 {
        if g.backend.started.lock().expect("lock").iter().any(|u| u == unit) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{unit} was never started");
}

#[tokio::test]
async fn a_worker_a_request_waits_for_is_not_unloaded_as_idle() {
    // A keep-alive of zero: every worker no request holds is idle at once.
    let g = gateway_keeping(vec![route("a", 4, None)], &[("infer-a", Worker::Down)], Worker::Starting, Duration::ZERO);
    let view = g.backend.view().await;
    let request = tokio::spawn(proxy(
        State(g.clone()),
        axum::Extension(Via::Unix),
        Method::POST,
        Uri::from_static("/v1/completions"),
        HeaderMap::new(),
        Bytes::from_static(br#"{"model":"a","prompt":"x"}"#),
    ));
    started(&g, "infer-a").await;
    g.unload_idle_now(&view).await;
    assert!(g.backend.stopped.lock().expect("lock").is_empty(), "the worker a request waits for was unloaded");
    g.backend.set("infer-a", Worker::Running);
    // The fake worker has no socket: the request ends, with its hold.
    let answer = request.await.expect("task");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    g.unload_idle_now(&view).await;
    assert_eq!(*g.backend.stopped.lock().expect("lock"), ["infer-a"], "once answered, it is idle");
}

#[tokio::test]
async fn a_request_that_comes_as_its_worker_is_unloaded_waits_and_starts_it_again() {
    let g = gateway(vec![route("a", 4, None)], &[("infer-a", Worker::Running)], Worker::Running);
    let view = g.backend.view().await;
    let _ = g.resident(&view).await;
    assert!(g.mark_unloading("a", None), "nobody holds it");
    let waiting = ensure_in_background(&g, "a");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "a worker being unloaded does not serve");
    g.unload(&view.models[0]).await.expect("unloaded");
    waiting.await.expect("task").expect("started again");
    assert_eq!(*g.backend.stopped.lock().expect("lock"), ["infer-a"]);
    assert_eq!(*g.backend.started.lock().expect("lock"), ["infer-a"]);
}

#[tokio::test]
async fn a_worker_stopped_while_it_starts_is_reported_as_stopped() {
    let g = gateway(vec![route("a", 4, None)], &[("infer-a", Worker::Down)], Worker::Starting);
    let waiting = ensure_in_background(&g, "a");
    started(&g, "infer-a").await;
    g.backend.set("infer-a", Worker::Down);
    let e = waiting.await.expect("task").expect_err("stopped");
    assert!(matches!(e, Unavailable::Stopped(ref unit) if unit == "infer-a"), "{e}");
}

#[tokio::test]
async fn the_keep_alive_of_a_worker_started_by_hand_counts_from_when_it_was_seen_up() {
    let keep = Duration::from_millis(200);
    let g = gateway_keeping(vec![route("a", 4, None)], &[("infer-a", Worker::Down)], Worker::Running, keep);
    let view = g.backend.view().await;
    g.unload_idle_now(&view).await;
    tokio::time::sleep(keep).await;
    // `aitherctl start infer-a`, a keep-alive after the gateway began.
    g.backend.set("infer-a", Worker::Running);
    g.unload_idle_now(&view).await;
    assert!(g.backend.stopped.lock().expect("lock").is_empty(), "unloaded as soon as it was seen");
    tokio::time::sleep(keep).await;
    g.unload_idle_now(&view).await;
    assert_eq!(*g.backend.stopped.lock().expect("lock"), ["infer-a"]);
}

#[tokio::test]
async fn a_worker_restarted_as_it_starts_is_awaited() {
    let g = gateway(vec![route("a", 4, None)], &[("infer-a", Worker::Down)], Worker::Starting);
    let waiting = ensure_in_background(&g, "a");
    started(&g, "infer-a").await;
    // It crashed while loading; its restart policy brings it back.
    g.backend.set("infer-a", Worker::Pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "a restart is not a stop");
    g.backend.set("infer-a", Worker::Starting);
    g.backend.set("infer-a", Worker::Running);
    waiting.await.expect("task").expect("ready after its restart");
}
