//! `aither-agent --workspace DIR [--gateway SOCKET]`: run the workflow step laid out in DIR.
//! Exit status 0 when `result.json` was written (whatever the step's outcome), 1 when the step
//! could not begin or its result could not be written.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Run one AitherOS workflow step: converse with the local model, act through granted tools")]
struct Args {
    /// The step's workspace (step.json, inputs/; outputs/, result.json and transcript.jsonl are written there).
    #[arg(long)]
    workspace: PathBuf,
    /// The gateway's Unix socket.
    #[arg(long, default_value = aither_sys::paths::GATEWAY_SOCKET)]
    gateway: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // This process runs only the step: every child it has is a command's, or what one left.
    if let Err(e) = aither_agent::command::become_subreaper() {
        eprintln!("aither-agent: cannot become a child subreaper: {e}");
    }
    if let Err(e) = aither_agent::command::end_children_on_terminate() {
        eprintln!("aither-agent: cannot watch for SIGTERM: {e}");
    }
    match aither_agent::step::run(&args.workspace, &aither_agent::gateway::Endpoint::Unix(args.gateway)) {
        Ok(result) => {
            let outcome = serde_json::to_value(&result.outcome).unwrap_or_default();
            eprintln!(
                "aither-agent: {} {}: {} after {} turns, {} tokens, {:.1} s; {} proposals, {} refused calls",
                result.run_id,
                result.step,
                outcome,
                result.turns,
                result.completion_tokens,
                result.seconds,
                result.proposals.len(),
                result.refused.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aither-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
