//! # aither-firstboot: the console wizard and the headless path
//!
//! At first boot, either a ratatui wizard on tty1 or an answers file (`/etc/aither/answers.toml`,
//! `aither.answers=` on the kernel command line, cloud-init user-data) configures the machine
//! through one validate-then-apply core, staged and committed atomically.
//!
//! ## Status
//!
//! Not implemented yet: the binary says so and exits with status 69 (`EX_UNAVAILABLE`).
//!
//! ## Limitations
//!
//! Everything above is not yet built.
fn main() {
    eprintln!("aither-firstboot: not implemented yet (see the issue \"First boot\")");
    std::process::exit(69);
}
