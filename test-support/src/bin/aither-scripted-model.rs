//! `aither-scripted-model --listen ADDR --script FILE [--log FILE]`: an OpenAI-compatible chat
//! endpoint that answers from a script (the VM test bed's stand-in for a model, behind the
//! gateway's cloud fallback). Test support only; never installed by the appliance.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let (Some(listen), Some(script)) = (value("--listen"), value("--script")) else {
        eprintln!("usage: aither-scripted-model --listen ADDR --script FILE [--log FILE]");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&script).unwrap_or_else(|e| {
        eprintln!("aither-scripted-model: {script}: {e}");
        std::process::exit(1);
    });
    let turns = aither_test_support::scripted::parse_script(&text).unwrap_or_else(|e| {
        eprintln!("aither-scripted-model: {script}: {e}");
        std::process::exit(1);
    });
    let listener = std::net::TcpListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("aither-scripted-model: {listen}: {e}");
        std::process::exit(1);
    });
    let log = value("--log").map(std::path::PathBuf::from);
    aither_test_support::scripted::ScriptedModel::serve_tcp(&listener, turns, log.as_deref());
}
