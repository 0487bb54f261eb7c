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

pub mod net;

use crate::rng::{self, below};
use crate::topology::{Distance, Topology};
use net::{End, Links, Network, Way};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shoal_placement::{Key, NodeId, PlacementConfig, PlacementError, View};
use std::collections::HashMap;

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
}

/// What one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// When each node had the whole object, in seconds (infinite if not
    /// by the limit).
    pub finish_s: Vec<f64>,
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
            start: self.now + self.cfg.network.hop_latency_ms / 1000.0,
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
        let mut chain = vec![c];
        match self.system {
            System::Direct => {
                self.start_flow(End::Origin, c, s);
                return;
            }
            System::Dht => {
                let p = &self.providers[s as usize];
                if p.is_empty() {
                    self.start_flow(End::Origin, c, s);
                } else {
                    let src = p[below(&mut self.coins, p.len())];
                    self.out.mesh_hits += 1;
                    self.start_flow(End::Node(src), c, s);
                }
                return;
            }
            System::Flat => chain.extend(path.hops().last().and_then(|id| self.index.get(id))),
            System::Shoal => chain.extend(path.hops().iter().filter_map(|id| self.index.get(id))),
        }
        let found = (1..chain.len()).find(|&i| self.state[self.slot(chain[i], s)] != IDLE);
        let top = match found {
            Some(i) => {
                self.out.mesh_hits += 1;
                i
            }
            None => {
                let last = chain.len() - 1;
                self.start_flow(End::Origin, chain[last], s);
                last
            }
        };
        for j in (0..top).rev() {
            self.start_flow(End::Node(chain[j + 1]), chain[j], s);
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
    fn step(&mut self) -> f64 {
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
        let mut until = next_start - self.now;
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
            if src == End::Origin {
                self.out.origin_bytes += adv;
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

/// Runs one rollout of `system` with `seed`.
pub fn rollout(cfg: &Timed, system: System, seed: u64) -> Result<Outcome, PlacementError> {
    let topo = &cfg.topology;
    let members: Vec<_> = topo.members(seed).collect();
    let ids: Vec<NodeId> = members.iter().map(|m| m.id()).collect();
    let pc = PlacementConfig {
        replicas: cfg.replicas,
        v: cfg.v,
        ..PlacementConfig::default()
    };
    let view = View::with_members(pc, members)?;
    let index = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let stripes = cfg.object_bytes.div_ceil(cfg.stripe_bytes.max(1)) as u32;
    let n = topo.nodes;
    let mut e = Engine {
        cfg,
        system,
        links: Links::new(topo, &cfg.network),
        flows: Vec::new(),
        state: vec![IDLE; n * stripes as usize],
        progress: vec![0.0; n * stripes as usize],
        stripes,
        now: 0.0,
        view,
        ids,
        index,
        keys: (0..stripes)
            .map(|s| Key::for_stripe(b"rollout-object", u64::from(s)))
            .collect(),
        providers: vec![Vec::new(); stripes as usize],
        coins: ChaCha8Rng::seed_from_u64(rng::stream(seed, 2)),
        out: Outcome {
            finish_s: vec![f64::INFINITY; n],
            ..Outcome::default()
        },
    };
    let mut clients: Vec<Client> = (0..n)
        .map(|_| Client {
            next: 0,
            pending: Vec::new(),
            done: 0,
        })
        .collect();
    let mut left = n;
    while left > 0 && e.now < cfg.limit_s {
        for (c, cl) in clients.iter_mut().enumerate() {
            let c = c as u32;
            if cl.done == stripes {
                continue;
            }
            cl.pending.retain(|&s| e.state[e.slot(c, s)] != DONE);
            cl.done = cl.next - cl.pending.len() as u32;
            while cl.pending.len() < cfg.readahead.max(1) && cl.next < stripes {
                let s = cl.next;
                cl.next += 1;
                e.pull(c, s);
                if e.state[e.slot(c, s)] != DONE {
                    cl.pending.push(s);
                } else {
                    cl.done += 1;
                }
            }
            if cl.done == stripes {
                e.out.finish_s[c as usize] = e.now;
                left -= 1;
            }
        }
        if left > 0 {
            e.step();
        }
    }
    Ok(e.out)
}
