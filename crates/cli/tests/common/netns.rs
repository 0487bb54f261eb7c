//! A small network on one machine for tests whose links must differ: one
//! network namespace per host, each with one veth on a bridge that lives
//! in a namespace of its own, and one more veth that puts the test process
//! on the same bridge. Firewall rules (iptables inside a host's namespace)
//! cut chosen links; pulling a host's cable makes it vanish the way a
//! deleted VM does, with packets to it going unanswered. Needs root, `ip`
//! (iproute2) and `iptables`; `scripts/test` installs them. Everything is
//! removed when the [`Lan`] drops.

use super::{Agent, Cluster, base_args};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The peer and API ports every agent on a [`Lan`] uses (each host has its
/// own address, so they never collide).
const PEER_PORT: u16 = 7400;
const API_PORT: u16 = 7401;

/// Whether this process may build namespaces (see [`super::privileged`]).
pub fn available() -> bool {
    super::privileged(&[("ip", "-V"), ("iptables", "-V")])
}

/// Runs a command and panics with its output if it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command inside namespace `ns`.
fn run_in(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

/// Hosts on one bridge, each in its own network namespace.
pub struct Lan {
    /// Prefix of every namespace and interface name this LAN made.
    prefix: String,
    /// The /24 the hosts live in: `10.<net>.<sub>.0`.
    net: [u8; 3],
    hosts: usize,
}

impl Lan {
    /// A bridge with `hosts` hosts on it, `10.a.b.1` to `10.a.b.<hosts>`,
    /// and the test process at `10.a.b.254`.
    pub fn new(hosts: usize) -> Lan {
        assert!(hosts < 250);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("sh{}{}", pid % 100_000, k);
        let net = [10, 200 + (pid % 50) as u8, ((pid / 50 + k) % 250) as u8];
        let lan = Lan { prefix, net, hosts };
        lan.remove();
        let hub = lan.hub();
        run(&["ip", "netns", "add", &hub]);
        run_in(&hub, &["ip", "link", "add", "br0", "type", "bridge"]);
        run_in(&hub, &["ip", "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let ns = lan.ns(i);
            run(&["ip", "netns", "add", &ns]);
            run_in(&ns, &["ip", "link", "set", "lo", "up"]);
            lan.plug(Some(&ns), &format!("{}h{i}", lan.prefix), lan.ip(i));
        }
        lan.plug(None, &format!("{}t", lan.prefix), lan.test_ip());
        lan
    }

    /// Connects `ns` (the test's own namespace if `None`) to the bridge
    /// with a veth named `name`, addressed `ip`/24.
    fn plug(&self, ns: Option<&str>, name: &str, ip: IpAddr) {
        let hub = self.hub();
        let port = format!("{name}b");
        run(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &port,
        ]);
        run(&["ip", "link", "set", &port, "netns", &hub]);
        run_in(&hub, &["ip", "link", "set", &port, "master", "br0", "up"]);
        let cidr = format!("{ip}/24");
        match ns {
            Some(ns) => {
                run(&["ip", "link", "set", name, "netns", ns]);
                run_in(ns, &["ip", "addr", "add", &cidr, "dev", name]);
                run_in(ns, &["ip", "link", "set", name, "up"]);
            }
            None => {
                run(&["ip", "addr", "add", &cidr, "dev", name]);
                run(&["ip", "link", "set", name, "up"]);
            }
        }
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> IpAddr {
        let [a, b, c] = self.net;
        IpAddr::V4(Ipv4Addr::new(a, b, c, i as u8 + 1))
    }

    /// The test process's address on the bridge (where an origin it
    /// starts should listen).
    pub fn test_ip(&self) -> IpAddr {
        let [a, b, c] = self.net;
        IpAddr::V4(Ipv4Addr::new(a, b, c, 254))
    }

    /// Drops every packet between hosts `i` and `j`, both ways, with
    /// firewall rules in `i`'s namespace; both still reach everyone else.
    pub fn block(&self, i: usize, j: usize) {
        let ns = self.ns(i);
        let other = self.ip(j).to_string();
        run_in(
            &ns,
            &["iptables", "-A", "OUTPUT", "-d", &other, "-j", "DROP"],
        );
        run_in(
            &ns,
            &["iptables", "-A", "INPUT", "-s", &other, "-j", "DROP"],
        );
    }

    /// Pulls host `i`'s cable at the bridge: from then on nothing it sends
    /// arrives and nothing sent to it is answered, as when a VM is deleted.
    pub fn unplug(&self, i: usize) {
        let port = format!("{}h{i}b", self.prefix);
        run_in(&self.hub(), &["ip", "link", "set", &port, "down"]);
    }

    /// Whether host `i` can open a TCP connection to `addr` within 1 s.
    pub fn can_connect(&self, i: usize, addr: SocketAddr) -> bool {
        let script = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
        Command::new("ip")
            .args(["netns", "exec", &self.ns(i), "timeout", "1", "bash", "-c"])
            .arg(script)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Deletes every namespace of this LAN (which removes its links).
    fn remove(&self) {
        for ns in (0..self.hosts).map(|i| self.ns(i)).chain([self.hub()]) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }

    /// Agent `n{i}` for host `i` (not started), with the common test
    /// arguments, gossip seeded with host 0, and `extra`.
    pub fn agent(&self, dir: &tempfile::TempDir, i: usize, extra: &[&str]) -> Agent {
        let mut args = base_args(i, self.ip(i), PEER_PORT, API_PORT, dir);
        let seed = SocketAddr::new(self.ip(0), PEER_PORT).to_string();
        args.extend(["--seed".into(), seed]);
        args.extend(["--allow-origin".into(), self.test_ip().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut agent = Agent::new(i, PEER_PORT, API_PORT, dir, args);
        agent.ip = self.ip(i);
        agent.netns = Some(self.ns(i));
        agent
    }

    /// `n` gossiping agents on hosts `0..n`, started, seeded with host 0.
    pub fn cluster(&self, n: usize, extra: &[&str]) -> Cluster {
        assert!(n <= self.hosts);
        let dir = tempfile::tempdir().unwrap();
        let mut agents: Vec<Agent> = (0..n).map(|i| self.agent(&dir, i, extra)).collect();
        for a in &mut agents {
            a.start();
        }
        Cluster { dir, agents }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}
