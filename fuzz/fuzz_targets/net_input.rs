//! Network specs from API bodies and files: CIDRs, MACs, `-p` bindings, resolv.conf lines,
//! reverse-lookup names. Never panic; what parses prints back to something that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_net::{dns, ipam, ports};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = s.parse::<ipam::Ipv4Net>() {
        let again: ipam::Ipv4Net = n.to_string().parse().expect("a printed CIDR parses");
        assert_eq!(again, n);
        assert!(n.trunc().contains(n.addr()));
    }
    if let Some(m) = ipam::parse_mac(s) {
        assert_eq!(ipam::parse_mac(&ipam::mac_string(&m)), Some(m));
    }
    let mut parts = s.splitn(3, '\n');
    let key = parts.next().unwrap_or("");
    let ip = parts.next().unwrap_or("").to_string();
    let port = parts.next().unwrap_or("").to_string();
    if let Ok(reqs) = ports::parse_binding(key, &[(ip, port)]) {
        for r in reqs {
            assert!(r.container_port > 0);
            if let Some((a, b)) = r.host_ports {
                assert!(a > 0 && a <= b);
            }
        }
    }
    let _ = dns::nameservers(s);
    if let Some(ip) = dns::parse_arpa(s) {
        let o = ip.octets();
        let name = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
        assert_eq!(dns::parse_arpa(&name), Some(ip));
    }
});
