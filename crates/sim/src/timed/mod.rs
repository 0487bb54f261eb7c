//! The timed model: transfers as flows over a rate-limited network
//! ([`net`]), advanced in time steps. Every node pulls an object stripe
//! by stripe with a read-ahead window, and a system decides where each
//! stripe comes from:
//!
//! - [`System::Shoal`]: the placement core's path (H2, H1, owner), with
//!   single flight on every node (a node already fetching a stripe is
//!   joined, its downstream flows held to what it has received: chunk
//!   pipelining) and forward-and-cache on every hop; with [`Relay::Star`],
//!   each piece of a stripe has one relay per rack (the placement core's
//!   `View::relay_plan`) that pulls it along its own path while the rest
//!   of the rack pulls from the relay;
//! - [`System::ShoalNoRelay`]: the same without rack relays;
//! - [`System::Direct`]: every node from the origin;
//! - [`System::Flat`]: one hop to the stripe's owner, which fetches once;
//! - [`System::Dht`]: a DHT of provider records (Spegel's way): a node
//!   that holds a stripe is advertised, a client picks a random provider,
//!   and goes to the origin when there is none;
//! - [`System::Swarm`]: a BitTorrent-style swarm (Kraken's and
//!   Dragonfly's way): a tracker that knows every holder, in-progress ones
//!   included; each node keeps [`SWARM_PEERS`] random peers and pulls each
//!   piece from the least busy of them that has or is fetching it (ties
//!   broken at random: choking, in effect), else from the least busy
//!   holder the tracker names; a few seeds ([`SWARM_SEEDS`])
//!   fetch from the origin. Pieces are pulled in order with the same
//!   read-ahead as shoal's, not rarest first.
//!
//! Nodes may vanish at any time ([`faults`]): transfers they were sending
//! resume elsewhere from the bytes received ([`depart`]), and paths route
//! around them ([`route`]).
//!
//! Between events (a flow starting or finishing) rates are constant, so
//! a step lasts at least `step_ms` and at most until the next flow would
//! finish (late by at most a thousandth of that flow's age, so that flows
//! of long runs ending close together end in one step).

mod depart;
mod driver;
pub mod faults;
pub mod net;
mod route;

pub use driver::{rollout, run};

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
    /// shoal: nearest-tier paths, single flight, forward-and-cache, and
    /// the configured rack relay ([`Timed::relay`]).
    Shoal,
    /// shoal without rack relays: every client fetches along its path.
    ShoalNoRelay,
    /// Every node straight from the origin.
    Direct,
    /// One hop to the owner.
    Flat,
    /// Provider records in a DHT; a random provider, else the origin.
    Dht,
    /// A BitTorrent-style swarm with a tracker and a few seeds.
    Swarm,
}

/// Peers each node of [`System::Swarm`] keeps (BitTorrent's usual 50).
pub const SWARM_PEERS: usize = 50;

/// Nodes of [`System::Swarm`] that fetch pieces from the origin: each
/// piece has one, and a node none of whose peers has a piece pulls it
/// from that piece's seed.
pub const SWARM_SEEDS: usize = 4;

impl System {
    /// The system's name in tables and figures.
    pub fn name(self) -> &'static str {
        match self {
            System::Shoal => "shoal",
            System::ShoalNoRelay => "shoal, no relay",
            System::Direct => "direct",
            System::Flat => "flat",
            System::Dht => "dht",
            System::Swarm => "swarm",
        }
    }
}

/// How a rack shares a piece of a stripe among its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Relay {
    /// No rack relay: every client fetches along its own path.
    None,
    /// One relay per (rack, piece) pulls along its path; the rest of the
    /// rack pulls from it.
    Star,
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
    /// Bytes a client has in flight at once (rounded to whole units of
    /// transfer, at least one).
    pub readahead_bytes: u64,
    /// The unit a rack routes by: each stripe is moved in pieces of this
    /// size (0: whole stripes). Paths stay per stripe: every piece of a
    /// stripe has the same owner and finger sets.
    pub piece_bytes: u64,
    /// The rack relay of [`System::Shoal`].
    pub relay: Relay,
    /// Fewest live members a rack needs for relays.
    pub rack_relay_min: usize,
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
    /// When each node vanished, seconds (infinite for nodes that stayed).
    pub left_s: Vec<f64>,
    /// Transfers cut off mid-stripe because their sender vanished.
    pub broken: u64,
    /// Of those, the ones resumed elsewhere from the bytes received (the
    /// others' receivers had vanished too, or had the stripe by then).
    pub resumes: u64,
    /// Pulls that went to a stand-in because every hop of their path had
    /// vanished.
    pub stand_ins: u64,
    /// Stripes an owner found at its previous owner (its first
    /// successor) rather than fetching them from the origin.
    pub peeks: u64,
    /// Client pulls that started in a churn window (from a node's leave or
    /// join until the fleet has surely detected it).
    pub window_pulls: u64,
    /// Of those, pulls found in the mesh.
    pub window_hits: u64,
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
    /// Bytes each node received.
    pub received_bytes: Vec<f64>,
    /// Bytes each node sent to other nodes.
    pub sent_bytes: Vec<f64>,
    /// Pulls that went to a rack relay.
    pub relayed_pulls: u64,
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
    /// The object's key (it orders each rack's piece relays).
    object: Key,
    keys: Vec<Key>,
    providers: Vec<Vec<u32>>,
    coins: ChaCha8Rng,
    out: Outcome,
    dead: Vec<bool>,
    detect_at: Vec<f64>,
    breakers: HashSet<(u32, u32)>,
    delay: f64,
    seed: u64,
    /// Where each (node, stripe) gets its bytes from: a node, or
    /// [`NO_NODE`] for the origin or nothing.
    upstream: Vec<u32>,
    /// Transfers whose sender vanished, waiting out the stall timeout.
    resumes: Vec<depart::Resume>,
    /// Coins for resumed transfers' paths, apart from the clients' ones.
    resume_coins: ChaCha8Rng,
    /// Whether the current time is inside a churn window.
    in_window: bool,
    /// Per unit of transfer (a piece, or a whole stripe), in object order:
    /// its length and its stripe. `keys` has each unit's stripe key.
    unit_len: Vec<u64>,
    unit_stripe: Vec<u32>,
    /// Whether stripes move in more than one piece.
    pieced: bool,
    /// Per stripe, the hop set's node indices, sorted, computed when first
    /// needed and forgotten when the view changes.
    hop_sets: Vec<Option<Vec<u32>>>,
    /// Every stripe of the object: its key and length (relay plans weigh
    /// them).
    object_stripes: Vec<(Key, u64)>,
    /// Per node, its rack's relay plan, made when first needed and
    /// forgotten when a member joins (deaths do not change it).
    relay_plans: Vec<Option<std::sync::Arc<shoal_placement::RelayPlan>>>,
    /// Coins for the paths of rack relays, apart from the clients' ones.
    relay_coins: ChaCha8Rng,
    /// [`System::Swarm`]: each node's peers, the seeds, and per unit the
    /// nodes that started fetching it (the tracker's list).
    swarm_peers: Vec<Vec<u32>>,
    swarm_seeds: Vec<u32>,
    swarm_holders: Vec<Vec<u32>>,
    /// Flows each node is sending now.
    uploads: Vec<u32>,
}

/// `upstream` of a (node, stripe) fed by the origin or by nothing.
const NO_NODE: u32 = u32::MAX;

impl Timed {
    /// The defaults: a 4 GiB object to `nodes` nodes in 64 MiB stripes,
    /// four at a time (256 MiB in flight), without rack relays, on the
    /// default [`Network`]. `shoal sim rollout` and `churn` turn the
    /// relay on by default (see their options).
    pub fn new(nodes: usize) -> Timed {
        Timed {
            topology: Topology::new(nodes),
            network: Network::default(),
            object_bytes: 4 << 30,
            stripe_bytes: 64 << 20,
            readahead_bytes: 256 << 20,
            piece_bytes: 0,
            relay: Relay::None,
            rack_relay_min: 4,
            replicas: 8,
            v: 2,
            limit_s: 1e7,
            failures: Failures::default(),
        }
    }
}

impl Timed {
    /// The unit of transfer: a piece, or a whole stripe.
    pub fn unit_bytes(&self) -> u64 {
        match self.piece_bytes {
            0 => self.stripe_bytes,
            p => p.min(self.stripe_bytes),
        }
    }

    /// The units of transfer, in the order a client pulls them: (stripe,
    /// piece within the stripe, length).
    pub fn units(&self) -> Vec<(u32, u32, u64)> {
        let (unit, mut out) = (self.unit_bytes().max(1), Vec::new());
        let stripes = self.object_bytes.div_ceil(self.stripe_bytes.max(1));
        for s in 0..stripes {
            let len = (self.object_bytes - s * self.stripe_bytes).min(self.stripe_bytes);
            for p in 0..len.div_ceil(unit) {
                out.push((s as u32, p as u32, (len - p * unit).min(unit)));
            }
        }
        out
    }
}

impl Engine<'_> {
    /// Forgets what depended on the view (the hop sets): call after every
    /// change to it.
    fn view_changed(&mut self) {
        self.hop_sets.iter_mut().for_each(|h| *h = None);
    }

    /// Forgets what depended on the members (the hop sets and the relay
    /// plans): call after a join.
    fn members_changed(&mut self) {
        self.view_changed();
        self.relay_plans.iter_mut().for_each(|p| *p = None);
    }

    fn slot(&self, node: u32, s: u32) -> usize {
        node as usize * self.stripes as usize + s as usize
    }

    /// The bytes of unit `s`: a piece, or a whole stripe.
    fn size(&self, s: u32) -> f64 {
        self.unit_len[s as usize] as f64
    }

    /// Starts moving stripe `s` from `src` to `dst`, from byte `from` on
    /// (what `dst` already has).
    fn start_flow(&mut self, src: End, dst: u32, s: u32, from: f64) {
        let slot = self.slot(dst, s);
        self.state[slot] = FETCHING;
        self.progress[slot] = from;
        self.upstream[slot] = match src {
            End::Node(n) => {
                self.uploads[n as usize] += 1;
                n
            }
            End::Origin => NO_NODE,
        };
        let t = &self.cfg.topology;
        let dist = match src {
            End::Origin => Distance::Fleet,
            End::Node(n) => t.distance(n, dst),
        };
        self.flows.push(Flow {
            src,
            dst,
            stripe: s,
            sent: from,
            start: self.now + self.delay + self.cfg.network.hop_latency_ms / 1000.0,
            way: self.links.way(t, src, dst),
            dist,
        });
    }

    /// Removes flow `i` (its sender has one upload less).
    fn drop_flow(&mut self, i: usize) {
        let f = self.flows.swap_remove(i);
        if let End::Node(n) = f.src {
            self.uploads[n as usize] -= 1;
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
        // The step: at least `step_ms`, longer while nothing starts and no
        // flow would finish sooner. A flow may finish up to a thousandth
        // of its age late, so flows of long runs that end close together
        // end in one step rather than one step each.
        let min_step = self.cfg.network.step_ms / 1000.0;
        let mut until = next_start.min(next_event) - self.now;
        for (f, &r) in self.flows.iter().zip(&rates) {
            if r > 0.0 {
                let slack = 1e-3 * (self.now - f.start).max(0.0);
                until = until.min((self.size(f.stripe) - f.sent) / r + slack);
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
            self.out.received_bytes[dst as usize] += adv;
            match src {
                End::Origin => self.out.origin_bytes += adv,
                End::Node(n) => {
                    self.out.sent_bytes[n as usize] += adv;
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
                self.drop_flow(i);
            } else {
                i += 1;
            }
        }
        self.out.steps += 1;
        dt
    }
}
