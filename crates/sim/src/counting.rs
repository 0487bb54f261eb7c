//! The counting model (`shoal sim placement`): every pull of every stripe
//! routed by the real placement core, with forward-and-cache into
//! per-node LRU stores, and every hop counted by the links it crosses. No
//! time: pulls happen one after another, so it measures where bytes go,
//! not how fast.
//!
//! A pull by client `C` of stripe `s`: if `C` holds `s` it is a local hit.
//! Otherwise `C` computes its path (`View::path`: H2, H1, owner, collapsed)
//! and the request walks it until a node holds `s`; the owner fetches from
//! the origin if nobody does. The bytes travel back along the same hops,
//! and every node they pass (and `C`) caches `s`. Options add pinned
//! replicas (the owner and `r - 1` others hold a stripe for good once it
//! is fetched from the origin, placed by ring successor, nearest the
//! owner, or uniformly) and an eager push (an H2 that serves a hit also
//! pushes a copy to its H1 if that one is cold).

mod stores;

use crate::rng::{self, below};
use crate::topology::{Distance, Topology, Weights};
use crate::workload::{Workload, shuffle};
use hashlink::LruCache;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use shoal_placement::{NodeId, PlacementConfig, PlacementError, View, fan_base};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use stores::Stores;

/// `eps`, the chance that H1 is picked uniformly rather than nearest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Eps {
    /// The placement default, `1 / b`.
    Default,
    /// A fixed probability.
    Value(f64),
    /// `min(1, k * b^2 * ln(b) / N)` with this `k`.
    Scaled(f64),
}

/// Where pinned replicas go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Pinning {
    /// The owner's ring successors.
    Successors,
    /// The nodes nearest the owner (its rack, then its row, then anywhere).
    Nearest,
    /// Uniformly random live nodes.
    Uniform,
}

/// How H2 and H1 are chosen; the two are compared pair by pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Rule {
    /// Nearest tier (proximity neighbour selection), as configured per
    /// level.
    Pns,
    /// Uniformly among the finger set, at both levels.
    Uniform,
}

/// Everything the counting model is told.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Counting {
    /// The fleet.
    pub topology: Topology,
    /// Link weights.
    pub weights: Weights,
    /// The demand.
    pub workload: Workload,
    /// Per-node LRU capacity in stripes (`None`: `2 * b^2`).
    pub capacity: Option<usize>,
    /// `r`.
    pub replicas: usize,
    /// `V`.
    pub v: usize,
    /// `eps`.
    pub eps: Eps,
    /// Nearest-tier choice of H2 under [`Rule::Pns`].
    pub nearest_l2: bool,
    /// Nearest-tier choice of H1 under [`Rule::Pns`].
    pub nearest_l1: bool,
    /// Pinned replicas, if any.
    pub pinning: Option<Pinning>,
    /// Eager push from H2 to a cold H1.
    pub eager_push: bool,
    /// Share of nodes that are dead: they ask for nothing, and placement
    /// never routes to them.
    pub dead: f64,
}

impl Counting {
    /// The defaults for `nodes` nodes.
    pub fn new(nodes: usize) -> Counting {
        Counting {
            topology: Topology::new(nodes),
            weights: Weights::default(),
            workload: Workload::default(),
            capacity: None,
            replicas: 8,
            v: 2,
            eps: Eps::Default,
            nearest_l2: true,
            nearest_l1: true,
            pinning: None,
            eager_push: false,
            dead: 0.0,
        }
    }

    /// The LRU capacity in stripes.
    pub fn capacity(&self) -> usize {
        let b = fan_base(self.topology.nodes);
        self.capacity.unwrap_or(2 * b * b)
    }

    /// `eps` as a probability.
    pub fn eps_value(&self) -> Option<f64> {
        let (b, n) = (
            fan_base(self.topology.nodes) as f64,
            self.topology.nodes as f64,
        );
        match self.eps {
            Eps::Default => None,
            Eps::Value(e) => Some(e),
            Eps::Scaled(k) => Some((k * b * b * b.ln() / n).min(1.0)),
        }
    }
}

/// One run's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Hops a request travelled until served, over pulls that moved bytes.
    pub client_hops: f64,
    /// Client hops plus pushes, per pull that moved bytes.
    pub system_hops: f64,
    /// Oversubscription-weighted hops over system hops.
    pub congestion: f64,
    /// Share of system hops that leave a rack.
    pub cross_rack: f64,
    /// Share of system hops that leave a row.
    pub cross_row: f64,
    /// Nodes holding a stripe at the end, mean over stripes requested.
    pub copies: f64,
    /// The same for the hottest file's stripes.
    pub hot_copies: f64,
    /// Of those, nodes that hold it as a hop, owner or pinned replica
    /// (not only because their own client pulled it).
    pub hot_mesh_copies: f64,
    /// p99 over mean of pulls served per node.
    pub skew_p99: f64,
    /// Max over mean of pulls served per node.
    pub skew_max: f64,
    /// Origin fetches per stripe requested.
    pub origin_per_stripe: f64,
    /// Share of pulls served from the client's own store.
    pub local_hits: f64,
}

/// Raw counts, for invariants.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Stripe pulls made.
    pub pulls: u64,
    /// Served from the client's own store.
    pub local_hits: u64,
    /// Served by a peer or the origin.
    pub moved: u64,
    /// Fetches from the origin.
    pub origin_fetches: u64,
    /// Pulls served, summed over nodes (a client that owns the stripe and
    /// fetches it itself serves itself).
    pub served: u64,
    /// Pulls served by nodes that are dead.
    pub served_by_dead: u64,
    /// Copies pushed (eager push, pinned replicas).
    pub pushes: u64,
    /// Distinct stripes requested.
    pub stripes_requested: u64,
}

/// Fingerprints of what a run saw, to check pairing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Digests {
    /// The demand: (client, stripe) of every pull, in order.
    pub demand: u64,
    /// The placement: every pull's owner.
    pub placement: u64,
    /// The routes: every pull's H2 and H1.
    pub routes: u64,
}

/// One run of the counting model.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The figures.
    pub metrics: Metrics,
    /// The counts behind them.
    pub counts: Counts,
    /// Pairing fingerprints.
    pub digests: Digests,
}

/// Hop tallies.
#[derive(Default)]
struct Hops {
    system: u64,
    weighted: f64,
    cross_rack: u64,
    cross_row: u64,
}

impl Hops {
    fn add(&mut self, d: Distance, w: &Weights) {
        self.system += 1;
        self.weighted += w.of(d);
        self.cross_rack += u64::from(d >= Distance::Row);
        self.cross_row += u64::from(d == Distance::Fleet);
    }
}

fn mix(h: &mut DefaultHasher, v: impl Hash) {
    v.hash(h);
}

/// Builds the view a run routes with: the same members for both rules,
/// only the nearest-tier switches differ.
fn view(cfg: &Counting, seed: u64, rule: Rule) -> Result<(View, Vec<NodeId>), PlacementError> {
    let pc = PlacementConfig {
        replicas: cfg.replicas,
        v: cfg.v,
        eps: cfg.eps_value(),
        nearest_l2: rule == Rule::Pns && cfg.nearest_l2,
        nearest_l1: rule == Rule::Pns && cfg.nearest_l1,
        ..PlacementConfig::default()
    };
    let members: Vec<_> = cfg.topology.members(seed).collect();
    let ids = members.iter().map(|m| m.id()).collect();
    Ok((View::with_members(pc, members)?, ids))
}

/// Runs the counting model once.
pub fn run(cfg: &Counting, seed: u64, rule: Rule) -> Result<Run, PlacementError> {
    let (mut view, ids) = view(cfg, seed, rule)?;
    let n = ids.len();
    let index: HashMap<NodeId, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    // Dead nodes, from their own stream.
    let mut dead = vec![false; n];
    let mut drng = ChaCha8Rng::seed_from_u64(rng::stream(seed, 3));
    for (i, d) in dead.iter_mut().enumerate() {
        if rng::unit(&mut drng) < cfg.dead {
            *d = true;
            view.mark_dead(ids[i]);
        }
    }
    let alive: Vec<u32> = (0..n as u32).filter(|&i| !dead[i as usize]).collect();
    let w = &cfg.workload;
    let keys = w.keys();
    let mut demand = ChaCha8Rng::seed_from_u64(rng::stream(seed, 1));
    let mut coins = ChaCha8Rng::seed_from_u64(rng::stream(seed, 2));
    let requests = w.requests(&alive, &mut demand);

    let cap = cfg.capacity().max(1);
    let mut st = Stores {
        cap,
        lru: (0..n).map(|_| LruCache::new_unbounded()).collect(),
        pinned: vec![Vec::new(); keys.len()],
        copies: vec![0; keys.len()],
        mesh_copies: vec![0; keys.len()],
    };
    let mut requested = vec![false; keys.len()];
    let mut served = vec![0u64; n];
    let (mut c, mut hops) = (Counts::default(), Hops::default());
    let mut client_hops = 0u64;
    let (mut hd, mut hp, mut hr) = (
        DefaultHasher::new(),
        DefaultHasher::new(),
        DefaultHasher::new(),
    );
    let topo = &cfg.topology;
    let mut chain: Vec<u32> = Vec::with_capacity(4);

    for req in &requests {
        for si in w.stripe_order(&mut demand) {
            let s = w.stripe_id(req.file, si);
            let client = req.client;
            c.pulls += 1;
            requested[s as usize] = true;
            mix(&mut hd, (client, s));
            // Every pull draws its path, hit or not, so both rules see the
            // same coins.
            let path = view.path(ids[client as usize], keys[s as usize], &mut coins);
            let [h2, h1, owner] = path.chain().unwrap_or([ids[client as usize]; 3]);
            mix(&mut hp, owner);
            mix(&mut hr, (h2, h1));
            if st.holds(client, s) {
                c.local_hits += 1;
                st.cache(client, s, false);
                continue;
            }
            c.moved += 1;
            chain.clear();
            chain.push(client);
            chain.extend(path.hops().iter().filter_map(|id| index.get(id).copied()));
            let at = (1..chain.len())
                .find(|&i| st.holds(chain[i], s))
                .unwrap_or(chain.len() - 1);
            let server = chain[at];
            let fresh = !st.holds(server, s);
            c.origin_fetches += u64::from(fresh);
            served[server as usize] += 1;
            c.served += 1;
            c.served_by_dead += u64::from(dead[server as usize]);
            client_hops += at as u64;
            for pair in chain[..=at].windows(2) {
                hops.add(topo.distance(pair[0], pair[1]), &cfg.weights);
            }
            for (i, &node) in chain[..=at].iter().enumerate() {
                st.cache(node, s, i > 0);
            }
            if fresh && let Some(p) = cfg.pinning {
                let owner_ix = index.get(&owner).copied().unwrap_or(server);
                for r in replicas(
                    cfg,
                    &view,
                    &ids,
                    &index,
                    &dead,
                    keys[s as usize],
                    owner_ix,
                    p,
                    seed,
                    s,
                ) {
                    if !st.holds(r, s) {
                        c.pushes += 1;
                        hops.add(topo.distance(owner_ix, r), &cfg.weights);
                    }
                    st.pin(r, s);
                }
                st.pin(owner_ix, s);
            }
            if cfg.eager_push
                && index.get(&h2) == Some(&server)
                && h1 != h2
                && let Some(&h1) = index.get(&h1)
                && !st.holds(h1, s)
            {
                c.pushes += 1;
                hops.add(topo.distance(server, h1), &cfg.weights);
                st.cache(h1, s, true);
            }
        }
    }
    c.stripes_requested = requested.iter().filter(|&&r| r).count() as u64;
    let metrics = metrics(
        cfg,
        &c,
        &hops,
        client_hops,
        &st,
        &requested,
        &served,
        &alive,
    );
    Ok(Run {
        metrics,
        counts: c,
        digests: Digests {
            demand: hd.finish(),
            placement: hp.finish(),
            routes: hr.finish(),
        },
    })
}

/// The `r - 1` nodes that pin stripe `s` besides its owner.
#[allow(clippy::too_many_arguments)]
fn replicas(
    cfg: &Counting,
    view: &View,
    ids: &[NodeId],
    index: &HashMap<NodeId, u32>,
    dead: &[bool],
    key: shoal_placement::Key,
    owner: u32,
    how: Pinning,
    seed: u64,
    s: u32,
) -> Vec<u32> {
    let want = cfg.replicas.saturating_sub(1);
    let mut rng = ChaCha8Rng::seed_from_u64(rng::stream(seed ^ u64::from(s), 4));
    match how {
        Pinning::Successors => view
            .successors(key, cfg.replicas)
            .iter()
            .skip(1)
            .filter_map(|id| index.get(id).copied())
            .collect(),
        Pinning::Uniform => {
            let mut out = Vec::new();
            let mut tries = 0;
            while out.len() < want && tries < 64 * want.max(1) {
                tries += 1;
                let r = below(&mut rng, ids.len()) as u32;
                if r != owner && !dead[r as usize] && !out.contains(&r) {
                    out.push(r);
                }
            }
            out
        }
        Pinning::Nearest => {
            let t = &cfg.topology;
            let mut out = Vec::new();
            for d in [Distance::Rack, Distance::Row, Distance::Fleet] {
                // Candidates at this distance, scanned from the owner's
                // rack outwards (a whole-fleet scan only if the row is
                // not enough).
                let mut cand: Vec<u32> = (0..ids.len() as u32)
                    .filter(|&i| !dead[i as usize] && t.distance(owner, i) == d)
                    .collect();
                shuffle(&mut cand, &mut rng);
                out.extend(cand.into_iter().take(want - out.len()));
                if out.len() == want {
                    break;
                }
            }
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn metrics(
    cfg: &Counting,
    c: &Counts,
    hops: &Hops,
    client_hops: u64,
    st: &Stores,
    requested: &[bool],
    served: &[u64],
    alive: &[u32],
) -> Metrics {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let sys = hops.system as f64;
    let req: Vec<usize> = (0..requested.len()).filter(|&s| requested[s]).collect();
    let mean_of = |f: &dyn Fn(usize) -> f64, set: &[usize]| {
        ratio(set.iter().map(|&s| f(s)).sum(), set.len() as f64)
    };
    let hot: Vec<usize> = (0..cfg.workload.stripes)
        .filter(|&s| requested[s])
        .collect();
    let mut load: Vec<f64> = alive.iter().map(|&i| served[i as usize] as f64).collect();
    load.sort_by(f64::total_cmp);
    let mean_load = ratio(load.iter().sum(), load.len() as f64);
    Metrics {
        client_hops: ratio(client_hops as f64, c.moved as f64),
        system_hops: ratio((client_hops + c.pushes) as f64, c.moved as f64),
        congestion: ratio(hops.weighted, sys),
        cross_rack: ratio(hops.cross_rack as f64, sys),
        cross_row: ratio(hops.cross_row as f64, sys),
        copies: mean_of(&|s| f64::from(st.copies[s]), &req),
        hot_copies: mean_of(&|s| f64::from(st.copies[s]), &hot),
        hot_mesh_copies: mean_of(&|s| f64::from(st.mesh_copies[s]), &hot),
        skew_p99: ratio(crate::stats::percentile(&load, 99.0), mean_load),
        skew_max: ratio(load.last().copied().unwrap_or(0.0), mean_load),
        origin_per_stripe: ratio(c.origin_fetches as f64, c.stripes_requested as f64),
        local_hits: ratio(c.local_hits as f64, c.pulls as f64),
    }
}
