//! A multi-host rig on one machine: N network namespaces, each with an `eth0` on a bridge of
//! the host, addressed 10.216.S.(i+1)/24 where S is the test's network slot. A daemon started
//! in one (`Daemon::start_in_netns`) reaches the others as separate hosts would. Everything is
//! removed when the rig is dropped, also after a failed test.

use std::process::{Command, Stdio};

use crate::NetSlot;

/// The rig's namespaces and their addresses.
#[derive(Debug)]
pub struct Rig {
    /// Keeps the rig's names and addresses the test's own.
    pub slot: NetSlot,
    pub bridge: String,
    pub netns: Vec<String>,
    pub addrs: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).stderr(Stdio::piped()).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

impl Rig {
    /// A rig of `n` hosts.
    pub fn new(n: usize) -> Rig {
        let slot = NetSlot::reserve();
        let s = slot.n;
        let bridge = format!("skrig{s}");
        let rig = Rig {
            slot,
            bridge: bridge.clone(),
            netns: (0..n).map(|i| format!("skrig{s}h{i}")).collect(),
            addrs: (0..n).map(|i| format!("10.216.{s}.{}", i + 1)).collect(),
        };
        rig.remove();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, ns) in rig.netns.iter().enumerate() {
            let host_end = format!("skr{s}h{i}");
            ip(&["netns", "add", ns]);
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", ns]);
            ip(&["link", "set", &host_end, "master", &bridge, "up"]);
            ip(&["-n", ns, "addr", "add", &format!("{}/24", rig.addrs[i]), "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        rig
    }

    fn remove(&self) {
        for (i, ns) in self.netns.iter().enumerate() {
            // The host end goes with its namespace, but not until the namespace's last user has.
            ip_quiet(&["link", "del", &format!("skr{}h{i}", self.slot.n)]);
            ip_quiet(&["netns", "del", ns]);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.remove();
    }
}
