//! aitherctl: thin shim over the library.
fn main() {
    std::process::exit(agentd::not_implemented("aitherctl", "agentd: the appliance daemon"));
}
