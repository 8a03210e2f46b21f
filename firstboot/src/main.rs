//! `aither-firstboot`: a shim over [`aither_firstboot::cli`].
fn main() {
    std::process::exit(aither_firstboot::cli::main());
}
