//! The timed model: transfers as flows over a rate-limited network
//! ([`net`]), advanced in time steps. Every node pulls an object stripe
//! by stripe with a read-ahead window, and a system decides where each
//! stripe comes from:
//!
//! - [`System::Shoal`]: the placement core's path (H2, H1, owner), with
//!   single flight on every node (a node already fetching a stripe is
//!   joined, its downstream flows held to what it has received: chunk
//!   pipelining) and forward-and-cache on every hop;
//! - [`System::Direct`]: every node from the origin;
//! - [`System::Flat`]: one hop to the stripe's owner, which fetches once;
//! - [`System::Dht`]: a DHT of provider records (Spegel's way): a node
//!   that holds a stripe is advertised, a client picks a random provider,
//!   and goes to the origin when there is none.
//!
//! Between events (a flow starting or finishing) rates are constant, so
//! a step lasts at least `step_ms` and at most until the next flow would
//! finish.

mod driver;
pub mod faults;
pub mod net;

pub use driver::{rollout, run};

use crate::rng::below;
use crate::topology::{Distance, Topology};
use faults::Failures;
use net::{End, Links, Network, Way};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shoal_placement::{Key, NodeId, View};
use std::collections::{HashMap, HashSet};

/// Where clients get stripes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum System {
    /// shoal: nearest-tier paths, single flight, forward-and-cache.
    Shoal,
    /// Every node straight from the origin.
    Direct,
    /// One hop to the owner.
    Flat,
    /// Provider records in a DHT; a random provider, else the origin.
    Dht,
}

/// A rollout: every node pulls one object at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timed {
    /// The fleet.
    pub topology: Topology,
    /// Its links.
    pub network: Network,
    /// The object's size in bytes.
    pub object_bytes: u64,
    /// Stripe size in bytes.
    pub stripe_bytes: u64,
    /// Stripes a client fetches at once.
    pub readahead: usize,
    /// `r`.
    pub replicas: usize,
    /// `V`.
    pub v: usize,
    /// Simulated time after which a run gives up.
    pub limit_s: f64,
    /// How vanished nodes are noticed and paid for.
    pub failures: Failures,
}

/// What one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// When each client had the whole object, in seconds (infinite if not
    /// by the limit; 0 for nodes that pulled nothing).
    pub finish_s: Vec<f64>,
    /// When each client started (0 for nodes that pulled nothing).
    pub start_s: Vec<f64>,
    /// Attempts on peers that had vanished.
    pub stale_attempts: u64,
    /// Time clients spent waiting on vanished peers, summed, seconds.
    pub stale_wait_s: f64,
    /// Bytes sent by vanished nodes (must stay 0).
    pub dead_bytes: f64,
    /// Attempts over links that are cut.
    pub cut_attempts: u64,
    /// Bytes sent over links that are cut (must stay 0).
    pub cut_bytes: f64,
    /// Hops routed through a relay around a cut link.
    pub relays: u64,
    /// Bytes the origin sent.
    pub origin_bytes: f64,
    /// Bytes received by nodes, over all flows.
    pub moved_bytes: f64,
    /// Of those, bytes that left a rack.
    pub cross_rack_bytes: f64,
    /// Of those, bytes that left a row.
    pub cross_row_bytes: f64,
    /// Stripe pulls by clients.
    pub pulls: u64,
    /// Of those, pulls that found the stripe in the mesh (held or being
    /// fetched by a node on the way), not started at the origin.
    pub mesh_hits: u64,
    /// Time steps taken.
    pub steps: u64,
}

struct Flow {
    src: End,
    dst: u32,
    stripe: u32,
    sent: f64,
    start: f64,
    way: Way,
    dist: Distance,
}

const IDLE: u8 = 0;
const FETCHING: u8 = 1;
const DONE: u8 = 2;

struct Client {
    next: u32,
    pending: Vec<u32>,
    done: u32,
}

struct Engine<'a> {
    cfg: &'a Timed,
    system: System,
    links: Links,
    flows: Vec<Flow>,
    state: Vec<u8>,
    progress: Vec<f64>,
    stripes: u32,
    now: f64,
    view: View,
    ids: Vec<NodeId>,
    index: HashMap<NodeId, u32>,
    keys: Vec<Key>,
    providers: Vec<Vec<u32>>,
    coins: ChaCha8Rng,
    out: Outcome,
    dead: Vec<bool>,
    detect_at: Vec<f64>,
    breakers: HashSet<(u32, u32)>,
    delay: f64,
    seed: u64,
}

impl Timed {
    /// The defaults: a 4 GiB object to `nodes` nodes in 64 MiB stripes,
    /// four at a time, on the default [`Network`].
    pub fn new(nodes: usize) -> Timed {
        Timed {
            topology: Topology::new(nodes),
            network: Network::default(),
            object_bytes: 4 << 30,
            stripe_bytes: 64 << 20,
            readahead: 4,
            replicas: 8,
            v: 2,
            limit_s: 1e7,
            failures: Failures::default(),
        }
    }
}

impl Engine<'_> {
    fn slot(&self, node: u32, s: u32) -> usize {
        node as usize * self.stripes as usize + s as usize
    }

    fn size(&self, s: u32) -> f64 {
        let c = self.cfg;
        let start = u64::from(s) * c.stripe_bytes;
        (c.object_bytes - start).min(c.stripe_bytes) as f64
    }

    fn start_flow(&mut self, src: End, dst: u32, s: u32) {
        let slot = self.slot(dst, s);
        self.state[slot] = FETCHING;
        let t = &self.cfg.topology;
        let dist = match src {
            End::Origin => Distance::Fleet,
            End::Node(n) => t.distance(n, dst),
        };
        self.flows.push(Flow {
            src,
            dst,
            stripe: s,
            sent: 0.0,
            start: self.now + self.delay + self.cfg.network.hop_latency_ms / 1000.0,
            way: self.links.way(t, src, dst),
            dist,
        });
    }

    /// Client `c` starts its pull of stripe `s`.
    fn pull(&mut self, c: u32, s: u32) {
        self.out.pulls += 1;
        // Every pull draws its path, so systems that route see the same
        // coins whatever the state.
        let path = self
            .view
            .path(self.ids[c as usize], self.keys[s as usize], &mut self.coins);
        if self.state[self.slot(c, s)] != IDLE {
            self.out.mesh_hits += 1;
            return;
        }
        self.delay = 0.0;
        let mut chain = vec![c];
        match self.system {
            System::Direct => {
                self.start_flow(End::Origin, c, s);
                return;
            }
            System::Dht => {
                let src = self.provider(c, s);
                match src {
                    None => self.start_flow(End::Origin, c, s),
                    Some(src) => {
                        self.out.mesh_hits += 1;
                        self.start_flow(End::Node(src), c, s);
                    }
                }
                return;
            }
            System::Flat => chain.extend(path.hops().last().and_then(|id| self.index.get(id))),
            System::Shoal => chain.extend(path.hops().iter().filter_map(|id| self.index.get(id))),
        }
        // Hops that vanished: one connect timeout each, the first time this
        // client meets them; then its breaker skips them. If every hop is
        // gone, the owner's first live successor stands in.
        let timeout = self.cfg.failures.connect_timeout_ms / 1000.0;
        let mut live = vec![c];
        for &h in &chain[1..] {
            if self.dead[h as usize] {
                self.out.stale_attempts += 1;
                if self.breakers.insert((c, h)) {
                    self.delay += timeout;
                    self.out.stale_wait_s += timeout;
                }
            } else {
                live.push(h);
            }
        }
        if live.len() == 1 && chain.len() > 1 {
            let stand_in = path
                .fallbacks()
                .iter()
                .filter_map(|id| self.index.get(id).copied())
                .find(|&f| !self.dead[f as usize] && f != c);
            live.extend(stand_in);
        }
        let chain = self.route_around_cuts(c, live, &path);
        let found = (1..chain.len()).find(|&i| self.state[self.slot(chain[i], s)] != IDLE);
        let top = match found {
            Some(i) => {
                self.out.mesh_hits += 1;
                i
            }
            None => {
                // The owner (or its stand-in) peeks at its first live
                // successor, which holds the stripe if it owned it before
                // a join moved ownership; else it asks the origin.
                let last = chain.len() - 1;
                let top = chain[last];
                let peek = match self.system {
                    System::Shoal => path
                        .fallbacks()
                        .iter()
                        .filter_map(|id| self.index.get(id).copied())
                        .find(|&f| !self.dead[f as usize] && f != top && !self.cut(top, f)),
                    _ => None,
                };
                match peek.filter(|&f| self.state[self.slot(f, s)] != IDLE) {
                    Some(f) => {
                        self.out.mesh_hits += 1;
                        self.start_flow(End::Node(f), top, s);
                    }
                    None => self.start_flow(End::Origin, top, s),
                }
                last
            }
        };
        for j in (0..top).rev() {
            self.start_flow(End::Node(chain[j + 1]), chain[j], s);
        }
    }

    /// Whether `a` and `b` cannot reach each other.
    fn cut(&self, a: u32, b: u32) -> bool {
        faults::cut(self.cfg.failures.cut_share, self.seed, a, b)
    }

    /// One failed attempt from `from` to `to` over a cut link: a connect
    /// timeout the first time, then the breaker skips it.
    fn pay_cut(&mut self, from: u32, to: u32) {
        self.out.cut_attempts += 1;
        if self.breakers.insert((from, to)) {
            let t = self.cfg.failures.connect_timeout_ms / 1000.0;
            self.delay += t;
            self.out.stale_wait_s += t;
        }
    }

    /// The chain with every cut link routed around: through the first of
    /// the path's fallbacks that reaches both ends (a relay, as the agent
    /// does), else past the unreachable hop to the next one.
    fn route_around_cuts(
        &mut self,
        c: u32,
        chain: Vec<u32>,
        path: &shoal_placement::Path,
    ) -> Vec<u32> {
        if self.cfg.failures.cut_share <= 0.0 {
            return chain;
        }
        let fallbacks: Vec<u32> = path
            .fallbacks()
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .filter(|&f| !self.dead[f as usize] && f != c)
            .collect();
        let mut out = vec![c];
        for u in chain.into_iter().skip(1) {
            let d = *out.last().unwrap_or(&c);
            if !self.cut(d, u) {
                out.push(u);
                continue;
            }
            self.pay_cut(d, u);
            let relay = fallbacks
                .iter()
                .copied()
                .find(|&r| !out.contains(&r) && r != u && !self.cut(d, r) && !self.cut(r, u));
            // Without a relay the hop is skipped, and the next one up
            // (or, past the owner, the origin) is asked instead.
            if let Some(r) = relay {
                self.out.relays += 1;
                out.push(r);
                out.push(u);
            }
        }
        out
    }

    /// A random live-looking provider of `s` for the DHT baseline: dead
    /// ones whose records have not expired cost a dial timeout each.
    fn provider(&mut self, client: u32, s: u32) -> Option<u32> {
        let f = &self.cfg.failures;
        let now = self.now;
        let dead = &self.dead;
        // Records of the dead expire `dht_ttl_s` after they vanished (at 0).
        self.providers[s as usize].retain(|&p| !dead[p as usize] || now < f.dht_ttl_s);
        let mut tried = Vec::new();
        loop {
            let p = &self.providers[s as usize];
            let left: Vec<u32> = p.iter().copied().filter(|x| !tried.contains(x)).collect();
            if left.is_empty() {
                return None;
            }
            let pick = left[below(&mut self.coins, left.len())];
            if !self.dead[pick as usize] && !self.cut(client, pick) {
                return Some(pick);
            }
            tried.push(pick);
            if self.dead[pick as usize] {
                self.out.stale_attempts += 1;
            } else {
                self.out.cut_attempts += 1;
            }
            self.delay += f.dht_dial_timeout_s;
            self.out.stale_wait_s += f.dht_dial_timeout_s;
        }
    }

    /// Bytes of stripe `s` that `src` can pass on now.
    fn available(&self, src: End, s: u32) -> f64 {
        match src {
            End::Origin => f64::INFINITY,
            End::Node(n) => {
                let slot = self.slot(n, s);
                if self.state[slot] == DONE {
                    self.size(s)
                } else {
                    self.progress[slot]
                }
            }
        }
    }

    /// One step: share the links, move bytes, finish flows. Returns the
    /// step's length.
    fn step(&mut self, next_event: f64) -> f64 {
        self.links.clear();
        let mut next_start = f64::INFINITY;
        for f in &self.flows {
            if f.start <= self.now {
                self.links.load(&f.way);
            } else {
                next_start = next_start.min(f.start);
            }
        }
        let rates: Vec<f64> = self
            .flows
            .iter()
            .map(|f| {
                if f.start <= self.now {
                    self.links.rate(&f.way)
                } else {
                    0.0
                }
            })
            .collect();
        // The step: at least `step_ms`, longer while nothing would finish
        // or start sooner.
        let min_step = self.cfg.network.step_ms / 1000.0;
        let mut until = next_start.min(next_event) - self.now;
        for (f, &r) in self.flows.iter().zip(&rates) {
            if r > 0.0 {
                until = until.min((self.size(f.stripe) - f.sent) / r);
            }
        }
        let dt = until.max(min_step).min(self.cfg.limit_s);
        for (i, &r) in rates.iter().enumerate() {
            if r == 0.0 {
                continue;
            }
            let (src, s) = (self.flows[i].src, self.flows[i].stripe);
            let room = self.available(src, s).min(self.size(s)) - self.flows[i].sent;
            let adv = (r * dt).min(room).max(0.0);
            let f = &mut self.flows[i];
            f.sent += adv;
            let (dst, dist, sent) = (f.dst, f.dist, f.sent);
            let slot = self.slot(dst, s);
            self.progress[slot] = sent;
            self.out.moved_bytes += adv;
            match src {
                End::Origin => self.out.origin_bytes += adv,
                End::Node(n) => {
                    if self.dead[n as usize] {
                        self.out.dead_bytes += adv;
                    }
                    if self.cut(n, dst) {
                        self.out.cut_bytes += adv;
                    }
                }
            }
            if dist >= Distance::Row {
                self.out.cross_rack_bytes += adv;
            }
            if dist == Distance::Fleet {
                self.out.cross_row_bytes += adv;
            }
        }
        self.now += dt;
        let mut i = 0;
        while i < self.flows.len() {
            let f = &self.flows[i];
            if f.sent + 0.5 >= self.size(f.stripe) {
                let (dst, s) = (f.dst, f.stripe);
                let slot = self.slot(dst, s);
                self.state[slot] = DONE;
                self.providers[s as usize].push(dst);
                self.flows.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.out.steps += 1;
        dt
    }
}
