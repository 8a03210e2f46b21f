//! aitherctl: a thin shim over the library.
use clap::Parser;

fn main() {
    let cli = aitherctl::Cli::parse();
    match aitherctl::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("aitherctl: {e:#}");
            std::process::exit(1);
        }
    }
}
