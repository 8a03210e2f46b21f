//! `aither-hwprofile`: a shim over [`aither_hwprofile::cli`].
use clap::Parser;

fn main() {
    let cli = aither_hwprofile::cli::Cli::parse();
    if let Err(e) = aither_hwprofile::cli::run(cli) {
        eprintln!("aither-hwprofile: {e:#}");
        std::process::exit(1);
    }
}
