//! aitherctl: thin shim over [`agentd::ctl`].
use clap::Parser;

fn main() {
    let cli = agentd::ctl::Cli::parse();
    match agentd::ctl::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("aitherctl: {e:#}");
            std::process::exit(1);
        }
    }
}
