//! Runs a [`Plan`]: members join, warm nodes hold the object, some
//! vanish, clients start when planned and pull stripe by stripe with
//! their read-ahead window, while the engine steps time.

use super::faults::Plan;
use super::net::Links;
use super::{Client, DONE, Engine, IDLE, Outcome, System, Timed};
use crate::rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::{Key, NodeId, PlacementConfig, PlacementError, View};
use std::collections::HashSet;

/// Runs one rollout of `system` with `seed`: every node pulls at once.
pub fn rollout(cfg: &Timed, system: System, seed: u64) -> Result<Outcome, PlacementError> {
    run(cfg, &Plan::rollout(cfg.topology.nodes), system, seed)
}

/// Runs `plan` under `system` with `seed`.
pub fn run(cfg: &Timed, plan: &Plan, system: System, seed: u64) -> Result<Outcome, PlacementError> {
    let topo = &cfg.topology;
    let all: Vec<_> = topo.members(seed).collect();
    let ids: Vec<NodeId> = all.iter().map(|m| m.id()).collect();
    let pc = PlacementConfig {
        replicas: cfg.replicas,
        v: cfg.v,
        ..PlacementConfig::default()
    };
    let view = View::with_members(pc, all.iter().take(plan.members.max(1)).cloned())?;
    let index = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let stripes = cfg.object_bytes.div_ceil(cfg.stripe_bytes.max(1)) as u32;
    let n = topo.nodes;
    let mut frng = ChaCha8Rng::seed_from_u64(rng::stream(seed, 5));
    let (lo, hi) = cfg.failures.detect_s;
    let mut detect_at = vec![f64::INFINITY; n];
    let mut dead = vec![false; n];
    for &v in &plan.vanish {
        dead[v as usize] = true;
        detect_at[v as usize] = lo + (hi - lo) * rng::unit(&mut frng);
    }
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
            finish_s: vec![0.0; n],
            start_s: vec![0.0; n],
            ..Outcome::default()
        },
        dead,
        detect_at,
        breakers: HashSet::new(),
        delay: 0.0,
        seed,
    };
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
    let mut left = clients.len();
    while left > 0 && e.now < cfg.limit_s {
        for &v in &plan.vanish {
            let v = v as usize;
            if !detected[v] && e.detect_at[v] <= e.now {
                detected[v] = true;
                e.view.mark_dead(e.ids[v]);
            }
        }
        let mut next_event = f64::INFINITY;
        for (c, start, cl) in clients.iter_mut() {
            let c = *c;
            if *start > e.now {
                next_event = next_event.min(*start);
                continue;
            }
            if !joined[c as usize] {
                joined[c as usize] = true;
                e.view.join(all[c as usize].clone())?;
            }
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
        for &v in &plan.vanish {
            if !detected[v as usize] {
                next_event = next_event.min(e.detect_at[v as usize]);
            }
        }
        if left > 0 {
            e.step(next_event);
        }
    }
    Ok(e.out)
}
