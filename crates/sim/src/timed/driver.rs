//! Runs a [`Plan`]: members join, warm nodes hold the object, some
//! vanish when planned, clients start when planned and pull stripe by
//! stripe with their read-ahead window, while the engine steps time.

use super::faults::Plan;
use super::net::Links;
use super::{Client, DONE, Engine, IDLE, NO_NODE, Outcome, Relay, System, Timed};
use crate::rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::{Key, NodeId, PlacementConfig, PlacementError, View};
use std::collections::HashSet;

/// Runs one rollout of `system` with `seed`: every node pulls at once.
pub fn rollout(cfg: &Timed, system: System, seed: u64) -> Result<Outcome, PlacementError> {
    run(cfg, &Plan::rollout(cfg.topology.nodes), system, seed)
}

/// The swarm's peer sets ([`super::SWARM_PEERS`] distinct random others
/// per node, as a tracker hands out) and its seeds.
fn swarm(n: usize, seed: u64) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut coins = ChaCha8Rng::seed_from_u64(rng::stream(seed, 12));
    let want = super::SWARM_PEERS.min(n.saturating_sub(1));
    let peers = (0..n as u32)
        .map(|me| {
            let mut set: Vec<u32> = Vec::with_capacity(want);
            while set.len() < want {
                let p = rng::below(&mut coins, n) as u32;
                if p != me && !set.contains(&p) {
                    set.push(p);
                }
            }
            set
        })
        .collect();
    let mut seeds: Vec<u32> = Vec::new();
    while seeds.len() < super::SWARM_SEEDS.min(n) {
        let s = rng::below(&mut coins, n) as u32;
        if !seeds.contains(&s) {
            seeds.push(s);
        }
    }
    (peers, seeds)
}

/// Runs `plan` under `system` with `seed`.
pub fn run(cfg: &Timed, plan: &Plan, system: System, seed: u64) -> Result<Outcome, PlacementError> {
    let topo = &cfg.topology;
    let all: Vec<_> = topo.members(seed).collect();
    let ids: Vec<NodeId> = all.iter().map(|m| m.id()).collect();
    let pc = PlacementConfig {
        replicas: cfg.replicas,
        v: cfg.v,
        // Without relays the placement core must not route as if there
        // were any (`View::relays_ask_owner`).
        rack_relay_min: if system == System::Shoal && cfg.relay != Relay::None {
            cfg.rack_relay_min
        } else {
            usize::MAX
        },
        ..PlacementConfig::default()
    };
    let view = View::with_members(pc, all.iter().take(plan.members.max(1)).cloned())?;
    let index = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    // The engine moves units (pieces, or whole stripes); `stripes` below
    // counts those.
    let units = cfg.units();
    let stripes = units.len() as u32;
    let stripe_count = cfg.object_bytes.div_ceil(cfg.stripe_bytes.max(1)) as usize;
    let in_flight = (cfg.readahead_bytes / cfg.unit_bytes().max(1)).max(1) as usize;
    let n = topo.nodes;
    let (lo, hi) = cfg.failures.detect_s;
    let mut frng = ChaCha8Rng::seed_from_u64(rng::stream(seed, 5));
    // Each leave's detection delay, drawn in plan order.
    let detect_after: Vec<f64> = plan
        .leaves
        .iter()
        .map(|_| lo + (hi - lo) * rng::unit(&mut frng))
        .collect();
    let windows = churn_windows(plan, hi);
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
        object: Key::for_object(b"rollout-object"),
        keys: units
            .iter()
            .map(|&(s, _, _)| Key::for_stripe(b"rollout-object", u64::from(s)))
            .collect(),
        unit_len: units.iter().map(|u| u.2).collect(),
        unit_stripe: units.iter().map(|u| u.0).collect(),
        pieced: units.iter().any(|u| u.1 > 0),
        hop_sets: vec![None; stripe_count],
        object_stripes: (0..stripe_count as u64)
            .map(|i| {
                let len = (cfg.object_bytes - i * cfg.stripe_bytes).min(cfg.stripe_bytes);
                (Key::for_stripe(b"rollout-object", i), len)
            })
            .collect(),
        relay_plans: vec![None; n],
        relay_coins: ChaCha8Rng::seed_from_u64(rng::stream(seed, 10)),
        swarm_peers: Vec::new(),
        swarm_seeds: Vec::new(),
        swarm_holders: Vec::new(),
        uploads: vec![0; n],
        providers: vec![Vec::new(); stripes as usize],
        coins: ChaCha8Rng::seed_from_u64(rng::stream(seed, 2)),
        out: Outcome {
            finish_s: vec![0.0; n],
            start_s: vec![0.0; n],
            left_s: vec![f64::INFINITY; n],
            received_bytes: vec![0.0; n],
            sent_bytes: vec![0.0; n],
            ..Outcome::default()
        },
        dead: vec![false; n],
        detect_at: vec![f64::INFINITY; n],
        breakers: HashSet::new(),
        delay: 0.0,
        seed,
        upstream: vec![NO_NODE; n * stripes as usize],
        resumes: Vec::new(),
        resume_coins: ChaCha8Rng::seed_from_u64(rng::stream(seed, 8)),
        in_window: false,
    };
    if system == System::Swarm {
        (e.swarm_peers, e.swarm_seeds) = swarm(n, seed);
        e.swarm_holders = vec![Vec::new(); stripes as usize];
    }
    for w in 0..plan.warm.min(n) as u32 {
        for s in 0..stripes {
            let slot = e.slot(w, s);
            e.state[slot] = DONE;
            e.providers[s as usize].push(w);
        }
    }
    let mut clients: Vec<(u32, f64, Client)> = plan
        .clients
        .iter()
        .map(|&(node, start)| {
            e.out.finish_s[node as usize] = f64::INFINITY;
            e.out.start_s[node as usize] = start;
            (
                node,
                start,
                Client {
                    next: 0,
                    pending: Vec::new(),
                    done: 0,
                },
            )
        })
        .collect();
    let mut joined: Vec<bool> = (0..n).map(|i| i < plan.members).collect();
    let mut detected = vec![false; n];
    let mut next_leave = 0;
    let mut left = clients.len();
    while left > 0 && e.now < cfg.limit_s {
        while next_leave < plan.leaves.len() && plan.leaves[next_leave].1 <= e.now {
            e.depart(plan.leaves[next_leave].0, detect_after[next_leave]);
            next_leave += 1;
        }
        for &(v, _) in &plan.leaves[..next_leave] {
            let v = v as usize;
            if !detected[v] && e.detect_at[v] <= e.now {
                detected[v] = true;
                e.view.mark_dead(e.ids[v]);
                e.view_changed();
            }
        }
        e.resume_due();
        e.in_window = windows.iter().any(|&(a, b)| a <= e.now && e.now < b);
        let mut next_event = plan.leaves.get(next_leave).map_or(f64::INFINITY, |l| l.1);
        next_event = next_event.min(e.next_resume());
        for (c, start, cl) in clients.iter_mut() {
            let c = *c;
            if cl.done == stripes {
                continue;
            }
            if e.dead[c as usize] {
                // A client that vanished pulls no more.
                cl.done = stripes;
                left -= 1;
                continue;
            }
            if *start > e.now {
                next_event = next_event.min(*start);
                continue;
            }
            if !joined[c as usize] {
                joined[c as usize] = true;
                e.view.join(all[c as usize].clone())?;
                e.members_changed();
            }
            cl.pending.retain(|&s| e.state[e.slot(c, s)] != DONE);
            cl.done = cl.next - cl.pending.len() as u32;
            while cl.pending.len() < in_flight && cl.next < stripes {
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
        for &(v, _) in &plan.leaves[..next_leave] {
            if !detected[v as usize] {
                next_event = next_event.min(e.detect_at[v as usize]);
            }
        }
        for &(a, b) in &windows {
            if a > e.now {
                next_event = next_event.min(a);
            } else if b > e.now {
                next_event = next_event.min(b);
            }
        }
        if left > 0 {
            e.step(next_event);
        }
    }
    Ok(e.out)
}

/// The churn windows of `plan`: from each leave or late join until
/// `detect_max` seconds after it, merged where they overlap.
fn churn_windows(plan: &Plan, detect_max: f64) -> Vec<(f64, f64)> {
    let mut events: Vec<f64> = plan.leaves.iter().map(|l| l.1).collect();
    events.extend(
        plan.clients
            .iter()
            .filter(|&&(c, t)| c as usize >= plan.members && t > 0.0)
            .map(|c| c.1),
    );
    events.sort_by(f64::total_cmp);
    let mut out: Vec<(f64, f64)> = Vec::new();
    for t in events {
        match out.last_mut() {
            Some(w) if t <= w.1 => w.1 = w.1.max(t + detect_max),
            _ => out.push((t, t + detect_max)),
        }
    }
    out
}
