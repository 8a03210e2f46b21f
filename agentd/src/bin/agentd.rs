//! agentd: thin shim over the library.
fn main() {
    std::process::exit(agentd::not_implemented("agentd", "agentd: the appliance daemon"));
}
