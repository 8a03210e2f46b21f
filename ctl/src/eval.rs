//! `aitherctl eval`: how often the agents get it right on this appliance's models, before a
//! pack is trusted with approvals. The suites ([`aither_eval`]) run through the gateway's TCP
//! listener with its key (root and `aither-admin` may read it) against each chat and code
//! model of the plan, or `--model`; the table is printed, and the report is kept by agentd
//! (`RecordEval`) for the Cockpit page. With `--endpoint` they run against any
//! OpenAI-compatible server instead (llama-server, for one), and nothing is recorded.

use std::path::PathBuf;

use aither_agent::gateway::{Endpoint, Gateway};
use aither_api::agentd as api;
use aither_api::eval::EvalReport;
use aither_eval::{Options, Suite};

use crate::client::CallError;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The suites to run: tools, devops, review, research, content, social (none: all).
    pub suites: Vec<String>,
    /// The model to evaluate, by name or role (default: each chat and code model of the plan;
    /// with --endpoint, `chat`).
    #[arg(long)]
    pub model: Option<String>,
    /// The model `search_docs` embeds with (research and content suites).
    #[arg(long, default_value = "embedding")]
    pub embedding_model: String,
    /// Runs per case, with the seeds 1 to N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub seeds: u64,
    /// A fixed fifth of each suite's cases: minutes instead of an hour.
    #[arg(long)]
    pub quick: bool,
    /// Runs at once (the server decodes them together).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub jobs: u64,
    /// Ask this server instead of the appliance's gateway: http://IP:PORT or unix:/PATH.
    /// Nothing is recorded.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The bearer key --endpoint wants, read from this file.
    #[arg(long, requires = "endpoint")]
    pub key_file: Option<PathBuf>,
    /// Where the runs' workspaces are kept for a look afterwards (default: a directory under
    /// $XDG_CACHE_HOME, else /var/tmp).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Write the report (JSON) to this file as well.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The suites asked for.
pub fn suites(names: &[String]) -> Result<Vec<Suite>, String> {
    if names.is_empty() {
        return Ok(Suite::ALL.to_vec());
    }
    let mut out: Vec<Suite> = names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A key file's key: its first line, which must not be empty.
pub fn read_key(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read the key {}: {e} (root and members of aither-admin may read the gateway's)", path.display())
    })?;
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if key.is_empty() {
        return Err(format!("{}: the key file is empty", path.display()));
    }
    Ok(key)
}

/// Where the gateway can be reached from here: its first TCP listener with its key, else its
/// Unix socket.
pub fn gateway_endpoint(gateway: &api::Gateway) -> Result<Endpoint, String> {
    for l in &gateway.listen {
        if let api::Listener::Tcp { address, key_required } = l {
            let Ok(addr) = address.parse() else { continue };
            let key = match (&gateway.api_key_file, key_required) {
                (Some(file), _) => Some(read_key(file)?),
                (None, true) => return Err(format!("the gateway at {address} wants a key and names no key file")),
                (None, false) => None,
            };
            return Ok(Endpoint::Http { addr, key });
        }
    }
    gateway
        .listen
        .iter()
        .find_map(|l| match l {
            api::Listener::Unix { path, .. } => Some(Endpoint::Unix(path.clone())),
            api::Listener::Tcp { .. } => None,
        })
        .ok_or_else(|| "the gateway has no listener this command can use".to_string())
}

/// What the server calls itself (`/props` `build_info`), when it says.
fn server_name(endpoint: &Endpoint) -> Option<String> {
    let gw = Gateway::new(endpoint.clone()).ok()?;
    let props = gw.get("/props", std::time::Duration::from_secs(10)).ok()?;
    props.get("build_info").and_then(|v| v.as_str()).map(str::to_string)
}

fn work_dir(args: &EvalArgs) -> PathBuf {
    args.work_dir.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME").map_or_else(
            || std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/tmp"), |h| PathBuf::from(h).join(".cache")),
            PathBuf::from,
        );
        base.join("aither-eval")
    })
}

/// Run the suites on one model; the report, with progress on stderr.
pub fn evaluate(args: &EvalArgs, endpoint: Endpoint, model: &str) -> Result<EvalReport, CallError> {
    let opts = Options {
        server: server_name(&endpoint),
        endpoint,
        model: model.to_string(),
        embedding_model: args.embedding_model.clone(),
        suites: suites(&args.suites).map_err(CallError::Failed)?,
        seeds: (1..=args.seeds).collect(),
        quick: args.quick,
        jobs: usize::try_from(args.jobs).unwrap_or(1),
        work_dir: work_dir(args).join(model.replace('/', "_")),
    };
    eprintln!(
        "eval: {model} at {}: {} (workspaces in {})",
        opts.endpoint,
        opts.suites.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        opts.work_dir.display()
    );
    let progress = |p: &aither_eval::Progress| {
        let verdict = if p.last.passed { "ok".to_string() } else { format!("FAIL: {}", p.last.why) };
        eprintln!("eval: {} {}/{} {} seed {}: {verdict}", p.suite.name(), p.done, p.total, p.last.case, p.last.seed);
    };
    let report = aither_eval::run(&opts, &progress).map_err(|e| CallError::Failed(e.to_string()))?;
    if let Some(out) = &args.output {
        let text = serde_json::to_vec_pretty(&report).map_err(|e| CallError::Failed(e.to_string()))?;
        aither_sys::atomic::write(out, &text).map_err(|e| CallError::Failed(format!("{}: {e}", out.display())))?;
    }
    Ok(report)
}

/// `--endpoint`: the endpoint and its key.
pub fn explicit_endpoint(args: &EvalArgs) -> Result<Option<Endpoint>, String> {
    let Some(text) = &args.endpoint else { return Ok(None) };
    let mut endpoint: Endpoint = text.parse()?;
    if let (Endpoint::Http { key, .. }, Some(file)) = (&mut endpoint, &args.key_file) {
        *key = Some(read_key(file)?);
    } else if args.key_file.is_some() {
        return Err("--key-file goes with an http:// endpoint (a Unix socket takes no key)".into());
    }
    Ok(Some(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_named_or_all() {
        assert_eq!(suites(&[]).expect("all").len(), 6);
        assert_eq!(suites(&["devops".into(), "tools".into(), "devops".into()]), Ok(vec![Suite::Tools, Suite::Devops]));
        assert!(suites(&["nope".into()]).expect_err("unknown").contains("the suites: tools"));
    }

    #[test]
    fn the_gateway_is_reached_by_tcp_with_its_key_else_by_its_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("gateway.key");
        std::fs::write(&key, "k3y\n").expect("key");
        let limits = api::ListenerLimits {
            header_timeout_seconds: 1,
            body_timeout_seconds: 1,
            idle_timeout_seconds: 1,
            max_connections: 1,
            max_body_bytes: 1,
        };
        let mut gw = api::Gateway {
            listen: vec![
                api::Listener::Unix { path: "/run/aither/gateway.sock".into(), group: None },
                api::Listener::Tcp { address: "127.0.0.1:8080".into(), key_required: true },
            ],
            api_key_file: Some(key.clone()),
            allowed_hosts: vec![],
            limits,
        };
        assert_eq!(
            gateway_endpoint(&gw),
            Ok(Endpoint::Http { addr: "127.0.0.1:8080".parse().expect("addr"), key: Some("k3y".into()) })
        );
        gw.api_key_file = Some(dir.path().join("missing"));
        assert!(gateway_endpoint(&gw).expect_err("unreadable").contains("cannot read the key"));
        gw.listen.truncate(1);
        assert_eq!(gateway_endpoint(&gw), Ok(Endpoint::Unix("/run/aither/gateway.sock".into())));
    }
}
