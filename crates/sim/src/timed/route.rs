//! Where a stripe comes from: each system's choice of source, the chain
//! of hops a shoal pull travels, and how it routes around vanished nodes
//! and cut links.

use super::net::End;
use super::{DONE, Engine, IDLE, NO_NODE, Relay, System, faults};
use crate::rng::below;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shoal_placement::Path;

impl Engine<'_> {
    /// Client `c` starts its pull of stripe `s`.
    pub(super) fn pull(&mut self, c: u32, s: u32) {
        self.out.pulls += 1;
        if self.in_window {
            self.out.window_pulls += 1;
        }
        // Every pull draws its path, so systems that route see the same
        // coins whatever the state. The pieces of one stripe share the
        // client's path (the agent sends a stripe's request along one
        // path): their coins come from the client and the stripe alone.
        let (id, key) = (self.ids[c as usize], self.keys[s as usize]);
        let path = if self.pieced {
            let stripe = u64::from(self.unit_stripe[s as usize]);
            let mut coins = ChaCha8Rng::seed_from_u64(crate::rng::stream(
                self.seed ^ (u64::from(c) << 32) ^ stripe,
                11,
            ));
            self.view.path(id, key, &mut coins)
        } else {
            self.view.path(id, key, &mut self.coins)
        };
        if self.state[self.slot(c, s)] != IDLE {
            self.hit();
            return;
        }
        self.delay = 0.0;
        if self.fetch(c, s, 0.0, &path) {
            self.hit();
        }
    }

    fn hit(&mut self) {
        self.out.mesh_hits += 1;
        if self.in_window {
            self.out.window_hits += 1;
        }
    }

    /// Starts the flows that bring stripe `s` to node `c`, which has its
    /// first `from` bytes, along `path` (drawn for `c`). Returns whether
    /// the stripe was found in the mesh rather than started at the origin.
    pub(super) fn fetch(&mut self, c: u32, s: u32, from: f64, path: &Path) -> bool {
        let mut chain = vec![c];
        // Through the rack's relay for this piece, if there is one: the
        // relay's own path then takes the place of the client's.
        let relayed = self.rack_relay(c, s).map(|r| {
            let key = self.keys[s as usize];
            (
                r,
                self.view
                    .path(self.ids[r as usize], key, &mut self.relay_coins),
            )
        });
        let path = match &relayed {
            Some((r, relay_path)) => {
                chain.push(*r);
                relay_path
            }
            None => path,
        };
        match self.system {
            System::Direct => {
                self.start_flow(End::Origin, c, s, from);
                return false;
            }
            System::Dht => {
                return match self.provider(c, s) {
                    None => {
                        self.start_flow(End::Origin, c, s, from);
                        false
                    }
                    Some(p) => {
                        self.start_flow(End::Node(p), c, s, from);
                        true
                    }
                };
            }
            System::Swarm => return self.swarm_fetch(c, s, from),
            System::Flat => chain.extend(path.hops().last().and_then(|id| self.index.get(id))),
            System::Shoal | System::ShoalNoRelay => {
                chain.extend(path.hops().iter().filter_map(|id| self.index.get(id)));
                // A client that is a hop of its relay's path skips to the
                // hop after itself, as the agent's flight ranks make it do.
                if let Some(i) = chain.iter().rposition(|&h| h == c).filter(|&i| i > 0) {
                    chain.drain(1..=i);
                }
                // A pull (not a resume) that still goes through its relay.
                if from == 0.0 && relayed.as_ref().is_some_and(|r| chain.get(1) == Some(&r.0)) {
                    self.out.relayed_pulls += 1;
                }
            }
        }
        let live = self.live_chain(c, chain, path);
        let mut chain = self.route_around_cuts(c, live, path);
        // A node resuming a transfer may have peers fed by it on its path:
        // asking them would be a loop, so they are passed over.
        chain.retain(|&h| h == c || !self.feeds_on(h, c, s));
        let found = (1..chain.len()).find(|&i| self.state[self.slot(chain[i], s)] != IDLE);
        let mut hit = found.is_some();
        let top = match found {
            Some(i) => i,
            None => {
                // The owner (or its stand-in) peeks at its first live
                // successor, which holds the stripe if it owned it before
                // a join moved ownership; else it asks the origin.
                let last = chain.len() - 1;
                let top = chain[last];
                let peek = match self.system {
                    System::Shoal | System::ShoalNoRelay => path
                        .fallbacks()
                        .iter()
                        .filter_map(|id| self.index.get(id).copied())
                        .find(|&f| !self.dead[f as usize] && f != top && !self.cut(top, f)),
                    _ => None,
                };
                let off = if top == c { from } else { 0.0 };
                match peek
                    .filter(|&f| self.state[self.slot(f, s)] != IDLE && !self.feeds_on(f, top, s))
                {
                    Some(f) => {
                        hit = true;
                        self.out.peeks += 1;
                        self.start_flow(End::Node(f), top, s, off);
                    }
                    None => self.start_flow(End::Origin, top, s, off),
                }
                last
            }
        };
        for j in (0..top).rev() {
            let off = if j == 0 { from } else { 0.0 };
            self.start_flow(End::Node(chain[j + 1]), chain[j], s, off);
        }
        hit
    }

    /// The rack relay client `c` pulls unit `s` through: the first of its
    /// rack's ranked relays that is not `c` itself and looks reachable
    /// (each vanished or cut one costs a connect timeout the first time,
    /// then the breaker skips it). `None` without relays, when `c` is in
    /// the stripe's hop set, or when `c` ranks first among the live.
    fn rack_relay(&mut self, c: u32, s: u32) -> Option<u32> {
        if self.system != System::Shoal || self.cfg.relay == Relay::None {
            return None;
        }
        let key = self.keys[s as usize];
        if self.in_hop_set(c, self.unit_stripe[s as usize] as usize, key) {
            return None;
        }
        // Units are in object order, so a unit's index counts pieces
        // across the object.
        let plan = match &self.relay_plans[c as usize] {
            Some(plan) => plan.clone(),
            None => {
                let per_stripe = self.cfg.stripe_bytes.div_ceil(self.cfg.unit_bytes().max(1));
                let plan = std::sync::Arc::new(self.view.relay_plan(
                    self.ids[c as usize],
                    self.object,
                    &self.object_stripes,
                    self.object_stripes.len() as u64 * per_stripe,
                ));
                self.relay_plans[c as usize] = Some(plan.clone());
                plan
            }
        };
        let ranked = plan.relays(&self.view, u64::from(s));
        let timeout = self.cfg.failures.connect_timeout_ms / 1000.0;
        for id in ranked {
            let r = *self.index.get(&id)?;
            if r == c {
                return None;
            }
            if self.dead[r as usize] {
                self.out.stale_attempts += 1;
                if self.breakers.insert((c, r)) {
                    self.delay += timeout;
                    self.out.stale_wait_s += timeout;
                }
                continue;
            }
            if self.cut(c, r) {
                self.pay_cut(c, r);
                continue;
            }
            return Some(r);
        }
        None
    }

    /// Whether node `c` is in the hop set of stripe `stripe` (whose key
    /// is `key`).
    fn in_hop_set(&mut self, c: u32, stripe: usize, key: shoal_placement::Key) -> bool {
        if self.hop_sets[stripe].is_none() {
            let mut set: Vec<u32> = self
                .view
                .hop_set(key)
                .iter()
                .filter_map(|id| self.index.get(id).copied())
                .collect();
            set.sort_unstable();
            self.hop_sets[stripe] = Some(set);
        }
        self.hop_sets[stripe]
            .as_ref()
            .is_some_and(|set| set.binary_search(&c).is_ok())
    }

    /// The chain without its vanished hops: each costs one connect
    /// timeout the first time client `c` meets it, then `c`'s breaker
    /// skips it. If the owner is gone, its first live successor stands in
    /// (as the agent's plan tries stand-ins after the hops), so the hops
    /// below still share one fetch.
    fn live_chain(&mut self, c: u32, chain: Vec<u32>, path: &Path) -> Vec<u32> {
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
        let owner_gone = chain.len() > 1 && chain.last().is_some_and(|&o| self.dead[o as usize]);
        if owner_gone {
            let stand_in = path
                .fallbacks()
                .iter()
                .filter_map(|id| self.index.get(id).copied())
                .find(|&f| !self.dead[f as usize] && !live.contains(&f));
            if stand_in.is_some() {
                self.out.stand_ins += 1;
            }
            live.extend(stand_in);
        }
        live
    }

    /// Whether node `h`'s copy of stripe `s` is being fed, directly or
    /// through other nodes, by node `c`.
    fn feeds_on(&self, h: u32, c: u32, s: u32) -> bool {
        let mut at = h;
        for _ in 0..self.ids.len() {
            let slot = self.slot(at, s);
            if self.state[slot] == DONE {
                return false;
            }
            match self.upstream[slot] {
                NO_NODE => return false,
                up if up == c => return true,
                up => at = up,
            }
        }
        false
    }

    /// Whether `a` and `b` cannot reach each other.
    pub(super) fn cut(&self, a: u32, b: u32) -> bool {
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
    fn route_around_cuts(&mut self, c: u32, chain: Vec<u32>, path: &Path) -> Vec<u32> {
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

    /// The swarm baseline's pull of unit `s` by `c`: from the least busy
    /// (fewest uploads now; ties at random) of its live peers that holds
    /// or is fetching it, else of the holders the tracker knows
    /// (in-progress ones included), else from
    /// the unit's first live seed, which fetches it from the origin if it
    /// has not yet. None is fed by `c`. Returns whether a node had it.
    fn swarm_fetch(&mut self, c: u32, s: u32, from: f64) -> bool {
        let usable = |e: &Self, p: u32| {
            p != c && !e.dead[p as usize] && e.state[e.slot(p, s)] != IDLE && !e.feeds_on(p, c, s)
        };
        let mut have: Vec<u32> = self.swarm_peers[c as usize]
            .iter()
            .copied()
            .filter(|&p| usable(self, p))
            .collect();
        if have.is_empty() {
            have = self.swarm_holders[s as usize]
                .iter()
                .copied()
                .filter(|&p| usable(self, p))
                .collect();
        }
        self.swarm_holders[s as usize].push(c);
        if let Some(least) = have.iter().map(|&p| self.uploads[p as usize]).min() {
            have.retain(|&p| self.uploads[p as usize] == least);
            let p = have[below(&mut self.coins, have.len())];
            self.start_flow(End::Node(p), c, s, from);
            return true;
        }
        let k = self.swarm_seeds.len();
        let seed = (0..k)
            .map(|i| self.swarm_seeds[(s as usize + i) % k])
            .find(|&x| !self.dead[x as usize]);
        match seed {
            Some(x) if x != c && !self.feeds_on(x, c, s) => {
                let hit = self.state[self.slot(x, s)] != IDLE;
                if !hit {
                    self.swarm_holders[s as usize].push(x);
                    self.start_flow(End::Origin, x, s, 0.0);
                }
                self.start_flow(End::Node(x), c, s, from);
                hit
            }
            _ => {
                self.start_flow(End::Origin, c, s, from);
                false
            }
        }
    }

    /// A random live-looking provider of `s` for the DHT baseline: dead
    /// ones whose records have not expired cost a dial timeout each.
    fn provider(&mut self, client: u32, s: u32) -> Option<u32> {
        let f = &self.cfg.failures;
        let now = self.now;
        let (dead, left) = (&self.dead, &self.out.left_s);
        // Records of the dead expire `dht_ttl_s` after they vanished.
        self.providers[s as usize]
            .retain(|&p| !dead[p as usize] || now < left[p as usize] + f.dht_ttl_s);
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
}
