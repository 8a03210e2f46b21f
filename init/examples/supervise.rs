//! Run N copies of a command under aither-init until SIGTERM: the aither side of
//! `benches/supervisors.py`. Usage: `supervise N STATE_DIR -- COMMAND [ARGS...]`, where `{i}`
//! in the arguments is replaced by the unit's number.
use std::time::Duration;

use aither_init::{Config, RestartMode, Supervisor, UnitSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(dir)) = (args.get(1).and_then(|n| n.parse::<usize>().ok()), args.get(2)) else {
        eprintln!("usage: supervise N STATE_DIR -- COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let command: Vec<String> = args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect();
    let units: Vec<UnitSpec> = (0..n)
        .map(|i| {
            let argv: Vec<String> = command.iter().map(|a| a.replace("{i}", &i.to_string())).collect();
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let mut u = UnitSpec::new(format!("u{i}"), &argv);
            u.restart = RestartMode::Always;
            u.stop_timeout = Duration::from_secs(2);
            u
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = std::path::PathBuf::from(dir);
        let cfg = Config {
            runtime_dir: dir.clone(),
            state_file: Some(dir.join("state.json")),
            subreaper: true,
            adopt: false,
            cgroups: Err(aither_init::cgroup::Unavailable::NotDelegated(dir.clone())),
            host: Default::default(),
        };
        let (sup, task) = Supervisor::spawn(cfg, units).expect("engine");
        sup.start_all().await.expect("start");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
        term.recv().await;
        sup.shutdown().await.expect("shutdown");
        let _ = task.await;
    });
}
