//! `aither-infer`: a thin shim over [`aither_infer::cli`].

use std::io::IsTerminal as _;

use clap::Parser as _;

fn main() {
    let args = aither_infer::cli::Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AITHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,llama-cpp-2=warn"));
    // No timestamps or colours: journald (or agentd's log file) adds the time.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    std::process::exit(aither_infer::cli::run(args));
}
