//! IP networks as workflows name them (`fetch_allow`) and the addresses no step reaches.

/// The clouds' metadata services outside link-local (Alibaba's, AWS's IPv6 one): never fetched.
pub const METADATA_ADDRESSES: [&str; 2] = ["100.100.100.200", "fd00:ec2::254"];

/// An IP network, `ADDRESS/PREFIX` or one address: its address and prefix length, or why not.
pub fn parse_net(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or network"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
    };
    Ok((ip, prefix))
}

/// Whether network `net` (from [`parse_net`]) holds `ip`.
pub fn net_contains(net: (std::net::IpAddr, u8), ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let bits = |a: IpAddr| -> (u128, u32) {
        match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let ((n, width), (a, a_width)) = (bits(net.0), bits(ip));
    if width != a_width {
        return false;
    }
    let host_bits = width - u32::from(net.1);
    let mask = if host_bits >= 128 {
        0
    } else {
        (!0u128 << host_bits) & (if width == 32 { u128::from(u32::MAX) } else { !0 })
    };
    n & mask == a & mask
}
