//! Network configuration through NetworkManager: the interfaces there are, a keyfile per
//! configured interface, and asking NetworkManager (over D-Bus) to load and activate them.
//!
//! The keyfiles (`/etc/NetworkManager/system-connections/aither-IFACE.nmconnection`, 0600)
//! are staged and committed with the rest of first boot; only then is NetworkManager asked
//! to reload its connections and bring the configured interfaces up. Without NetworkManager
//! running (a tree prepared with `--root`, or a machine where it starts later) the keyfiles
//! apply when it starts.

use std::path::Path;
use std::time::Duration;

use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use sha2::{Digest as _, Sha256};

use crate::answers::{InterfaceSettings, Method};

const NM: &str = "org.freedesktop.NetworkManager";

/// An interface of the machine, for the wizard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub mac: Option<String>,
    /// `up`, `down`, … (sysfs `operstate`) or NetworkManager's device state.
    pub state: String,
    pub wireless: bool,
}

/// Network interfaces from `root/sys/class/net`, loopback and virtual bridges left out.
pub fn links(root: &Path) -> Vec<Link> {
    let dir = root.join("sys/class/net");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<Link> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let read = |f: &str| std::fs::read_to_string(p.join(f)).ok().map(|s| s.trim().to_string());
            // Loopback is type 772; virtual interfaces have no `device` link.
            if read("type").as_deref() == Some("772") || name == "lo" || !p.join("device").exists() {
                return None;
            }
            Some(Link {
                mac: read("address").filter(|m| !m.is_empty()),
                state: read("operstate").unwrap_or_else(|| "unknown".into()),
                wireless: p.join("wireless").exists(),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Where an interface's keyfile goes.
pub fn keyfile_path(iface: &str) -> String {
    format!("/etc/NetworkManager/system-connections/aither-{iface}.nmconnection")
}

/// The connection's UUID, derived from the interface name so applying again replaces the
/// same connection.
pub fn connection_uuid(iface: &str) -> String {
    let h = Sha256::digest(format!("aitheros-connection:{iface}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // version 5 layout: name-based
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// A NetworkManager keyfile for one interface.
pub fn keyfile(i: &InterfaceSettings) -> String {
    let mut s = format!(
        "# Written by aither-firstboot.\n[connection]\nid=aither-{name}\nuuid={uuid}\ntype=ethernet\ninterface-name={name}\nautoconnect=true\nautoconnect-priority=10\n\n[ethernet]\n\n",
        name = i.interface,
        uuid = connection_uuid(&i.interface)
    );
    match &i.method {
        Method::Dhcp => s.push_str("[ipv4]\nmethod=auto\n\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n"),
        Method::Static { address, prefix, gateway, dns } => {
            let addr = match gateway {
                Some(g) => format!("address1={address}/{prefix},{g}\n"),
                None => format!("address1={address}/{prefix}\n"),
            };
            let dns_of = |v4: bool| -> String {
                let list: Vec<String> = dns.iter().filter(|d| d.is_ipv4() == v4).map(|d| format!("{d};")).collect();
                if list.is_empty() {
                    String::new()
                } else {
                    format!("dns={}\n", list.concat())
                }
            };
            if address.is_ipv4() {
                s.push_str(&format!(
                    "[ipv4]\nmethod=manual\n{addr}{}\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\n{}",
                    dns_of(true),
                    dns_of(false)
                ));
            } else {
                s.push_str(&format!(
                    "[ipv4]\nmethod=disabled\n\n[ipv6]\naddr-gen-mode=stable-privacy\nmethod=manual\n{addr}{}",
                    dns_of(false)
                ));
            }
        }
    }
    s
}

/// Ask a running NetworkManager to load the keyfiles and activate each configured
/// interface. `Ok(false)`: NetworkManager is not running (the keyfiles apply when it starts).
pub fn reload_and_activate(ifaces: &[InterfaceSettings]) -> Result<bool, String> {
    crate::bus::on_system_bus(Duration::from_secs(30), |conn| async move {
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.map_err(|e| e.to_string())?;
        let name = zbus::names::BusName::try_from(NM).map_err(|e| e.to_string())?;
        if !dbus.name_has_owner(name).await.unwrap_or(false) {
            return Ok(false);
        }
        let settings = crate::bus::proxy(
            &conn,
            NM,
            "/org/freedesktop/NetworkManager/Settings",
            "org.freedesktop.NetworkManager.Settings",
        )
        .await?;
        let ok: bool = settings.call("ReloadConnections", &()).await.map_err(|e| format!("ReloadConnections: {e}"))?;
        if !ok {
            return Err("NetworkManager did not reload its connections".into());
        }
        let nm = crate::bus::proxy(&conn, NM, "/org/freedesktop/NetworkManager", NM).await?;
        let mut problems = Vec::new();
        for i in ifaces {
            let activate = async {
                let c: OwnedObjectPath = settings
                    .call("GetConnectionByUuid", &(connection_uuid(&i.interface),))
                    .await
                    .map_err(|e| format!("the connection for {} did not load: {e}", i.interface))?;
                let d: OwnedObjectPath = nm
                    .call("GetDeviceByIpIface", &(i.interface.as_str(),))
                    .await
                    .map_err(|e| format!("no device {}: {e}", i.interface))?;
                let root = ObjectPath::try_from("/").map_err(|e| e.to_string())?;
                let _active: OwnedObjectPath = nm
                    .call("ActivateConnection", &(c, d, root))
                    .await
                    .map_err(|e| format!("cannot activate {}: {e}", i.interface))?;
                Ok::<(), String>(())
            };
            if let Err(e) = activate.await {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(true)
        } else {
            Err(problems.join("; "))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_keyfile_has_the_address_gateway_and_dns() {
        let i = InterfaceSettings {
            interface: "eth0".into(),
            method: Method::Static {
                address: "192.0.2.10".parse().expect("ip"),
                prefix: 24,
                gateway: Some("192.0.2.1".parse().expect("ip")),
                dns: vec!["192.0.2.53".parse().expect("ip"), "2001:db8::53".parse().expect("ip")],
            },
        };
        let k = keyfile(&i);
        assert!(k.contains("interface-name=eth0\n"));
        assert!(k.contains("[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\ndns=192.0.2.53;\n"), "{k}");
        assert!(k.contains("[ipv6]\naddr-gen-mode=stable-privacy\nmethod=auto\ndns=2001:db8::53;\n"), "{k}");
        assert_eq!(connection_uuid("eth0"), connection_uuid("eth0"));
        assert_ne!(connection_uuid("eth0"), connection_uuid("eth1"));
        assert_eq!(connection_uuid("eth0").len(), 36);
    }

    #[test]
    fn links_leave_out_loopback_and_virtual_interfaces() {
        let t = tempfile::tempdir().expect("tempdir");
        let net = t.path().join("sys/class/net");
        for (name, physical) in [("lo", false), ("enp1s0", true), ("virbr0", false), ("wlp2s0", true)] {
            std::fs::create_dir_all(net.join(name)).expect("dir");
            std::fs::write(net.join(name).join("operstate"), "up\n").expect("state");
            std::fs::write(net.join(name).join("address"), "52:54:00:12:34:56\n").expect("mac");
            if physical {
                std::fs::create_dir(net.join(name).join("device")).expect("device");
            }
        }
        std::fs::create_dir(net.join("wlp2s0/wireless")).expect("wireless");
        let l = links(t.path());
        assert_eq!(l.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["enp1s0", "wlp2s0"]);
        assert!(l[1].wireless && !l[0].wireless);
        assert_eq!(l[0].mac.as_deref(), Some("52:54:00:12:34:56"));
    }
}
