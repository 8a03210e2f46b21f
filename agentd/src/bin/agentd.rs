//! agentd: thin shim over [`agentd::run`].
use clap::Parser;

fn main() {
    std::process::exit(agentd::run::main(agentd::run::Args::parse()));
}
