//! `aither-drivers`: a shim over [`aither_drivers::cli`], the entry point of
//! aither-drivers.service (its own executable, so that it runs in the installer domain).
use clap::Parser;

fn main() {
    let cli = aither_drivers::cli::Cli::parse();
    if let Err(e) = aither_drivers::cli::run(&cli.args) {
        eprintln!("aither-drivers: {e:#}");
        std::process::exit(1);
    }
}
