//! A small datacenter on one machine: one network namespace per host,
//! each with a veth on a bridge that lives in a namespace of its own (the
//! core bridge, or a rack's bridge whose uplink to the core is a veth
//! pair shaped both ways), and one more veth that puts the benchmark
//! itself on the core bridge, unshaped, for setup and status. A host's
//! link is shaped both ways with a token bucket (`tc tbf`): on its own
//! end (what it sends) and on the bridge's end (what it receives). Needs
//! root and iproute2. Dropping the testbed deletes every namespace and
//! link it made.

use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::Command;

/// Runs `args`, failing with its stderr.
pub fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `args` inside namespace `ns`.
pub fn run_in(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// The core bridge, in the hub namespace: the origin, the central cache,
/// the benchmark itself and every rack's uplink are on it.
const CORE: &str = "br0";

/// Shapes what `dev` (in `ns`) sends to `mbit` with a token bucket of
/// 1/100 s at the rate, at least 64 KiB (a GSO segment), and a queue of
/// at most 20 ms at the rate: a datacenter port's buffer is a few
/// milliseconds deep, and a deeper FIFO would hold every gossip packet
/// behind that much bulk transfer on a saturated link (SWIM then declares
/// busy nodes down, which no datacenter does to them).
fn shape(ns: &str, dev: &str, mbit: f64) -> Result<()> {
    let rate = format!("{mbit}mbit");
    let burst = format!("{}", ((mbit * 1e6 / 8.0 / 100.0) as u64).max(64 << 10));
    run_in(
        ns,
        &[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
            "latency", "20ms",
        ],
    )
}

/// The namespaces and links of one benchmark run.
pub struct Testbed {
    prefix: String,
    subnet: [u8; 3],
    hosts: Vec<String>,
}

impl Testbed {
    /// An empty bridge, and the benchmark on it at `.254`.
    pub fn new() -> Result<Testbed> {
        let pid = std::process::id();
        // A /24 of 10.88.0.0/16 that no interface here uses yet.
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let third = (0..250u32)
            .map(|k| ((pid + k) % 250) as u8)
            .find(|c| !used.contains(&format!(" 10.88.{c}.")))
            .context("every 10.88.x.0/24 is in use")?;
        let mut t = Testbed {
            prefix: format!("shb{}", pid % 100_000),
            subnet: [10, 88, third],
            hosts: Vec::new(),
        };
        t.remove();
        let hub = t.hub();
        run(&["ip", "netns", "add", &hub])?;
        t.hosts.push(hub.clone());
        run_in(&hub, &["ip", "link", "add", CORE, "type", "bridge"])?;
        run_in(&hub, &["ip", "link", "set", CORE, "up"])?;
        t.plug(None, CORE, &format!("{}t", t.prefix), t.ip(254))?;
        Ok(t)
    }

    /// Adds host `name` at `.last` on the core bridge, its link shaped to
    /// `mbit` each way. Returns its namespace.
    pub fn host(&mut self, name: &str, last: u8, mbit: f64) -> Result<String> {
        self.host_on(CORE, name, last, mbit)
    }

    /// Adds rack `r`: a bridge of its own whose uplink to the core bridge
    /// is shaped to `mbit` each way (unshaped for `None`). Returns the
    /// bridge to put the rack's hosts on with [`Testbed::host_on`].
    pub fn rack(&mut self, r: usize, mbit: Option<f64>) -> Result<String> {
        let hub = self.hub();
        let bridge = format!("rk{r}");
        run_in(&hub, &["ip", "link", "add", &bridge, "type", "bridge"])?;
        run_in(&hub, &["ip", "link", "set", &bridge, "up"])?;
        let (down, up) = (format!("up{r}c"), format!("up{r}r"));
        run_in(
            &hub,
            &[
                "ip", "link", "add", &down, "type", "veth", "peer", "name", &up,
            ],
        )?;
        run_in(&hub, &["ip", "link", "set", &down, "master", CORE, "up"])?;
        run_in(&hub, &["ip", "link", "set", &up, "master", &bridge, "up"])?;
        if let Some(mbit) = mbit {
            // `up` sends what leaves the rack, `down` what enters it.
            shape(&hub, &up, mbit)?;
            shape(&hub, &down, mbit)?;
        }
        Ok(bridge)
    }

    /// [`Testbed::host`] on bridge `bridge` (the core, or a rack's).
    pub fn host_on(&mut self, bridge: &str, name: &str, last: u8, mbit: f64) -> Result<String> {
        let ns = format!("{}{name}", self.prefix);
        run(&["ip", "netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        run_in(&ns, &["ip", "link", "set", "lo", "up"])?;
        let veth = format!("{}{name}v", self.prefix);
        self.plug(Some(&ns), bridge, &veth, self.ip(last))?;
        shape(&ns, &veth, mbit)?;
        shape(&self.hub(), &format!("{veth}b"), mbit)?;
        Ok(ns)
    }

    /// Connects `ns` (the benchmark's own namespace for `None`) to
    /// `bridge` with veth `name`, addressed `ip`/24.
    fn plug(&self, ns: Option<&str>, bridge: &str, name: &str, ip: Ipv4Addr) -> Result<()> {
        let hub = self.hub();
        let port = format!("{name}b");
        run(&[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &port,
        ])?;
        run(&["ip", "link", "set", &port, "netns", &hub])?;
        run_in(&hub, &["ip", "link", "set", &port, "master", bridge, "up"])?;
        let cidr = format!("{ip}/24");
        match ns {
            Some(ns) => {
                run(&["ip", "link", "set", name, "netns", ns])?;
                run_in(ns, &["ip", "addr", "add", &cidr, "dev", name])?;
                run_in(ns, &["ip", "link", "set", name, "up"])
            }
            None => {
                run(&["ip", "addr", "add", &cidr, "dev", name])?;
                run(&["ip", "link", "set", name, "up"])
            }
        }
    }

    /// Bytes host `name` (as given to [`Testbed::host_on`]) has sent and
    /// received on its link so far, from the kernel's counters; `None` if
    /// they cannot be read.
    pub fn link_bytes(&self, name: &str) -> Option<(u64, u64)> {
        let dev = format!("{}{name}v", self.prefix);
        let stat = |which: &str| format!("/sys/class/net/{dev}/statistics/{which}_bytes");
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}{name}", self.prefix), "cat"])
            .args([stat("tx"), stat("rx")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut n = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some((n.next()??, n.next()??))
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    /// The address `.last` on the bridge.
    pub fn ip(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// Deletes every namespace (their links go with them) and the
    /// benchmark's own veth.
    fn remove(&self) {
        for ns in self.hosts.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}t", self.prefix)])
            .output();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.remove();
    }
}
