//! The counting model's per-node LRU stores, pinned copies, and the
//! per-stripe copy counts kept in step with every insert, eviction and
//! pin.

use hashlink::LruCache;

/// Per-node stores and per-stripe copy counts.
pub(super) struct Stores {
    pub(super) cap: usize,
    pub(super) lru: Vec<LruCache<u32, bool>>,
    pub(super) pinned: Vec<Vec<u32>>,
    pub(super) copies: Vec<u32>,
    pub(super) mesh_copies: Vec<u32>,
}

impl Stores {
    pub(super) fn holds(&self, node: u32, s: u32) -> bool {
        self.pinned[s as usize].contains(&node) || self.lru[node as usize].contains_key(&s)
    }

    /// `node` uses or caches `s`; `as_hop` when it got it for someone else.
    pub(super) fn cache(&mut self, node: u32, s: u32, as_hop: bool) {
        if self.pinned[s as usize].contains(&node) {
            return;
        }
        let lru = &mut self.lru[node as usize];
        if let Some(hop) = lru.get_mut(&s) {
            if as_hop && !*hop {
                *hop = true;
                self.mesh_copies[s as usize] += 1;
            }
            return;
        }
        // Evict first: hashlink's `insert` would evict silently, and the
        // copy counts must follow every eviction.
        if lru.len() >= self.cap
            && let Some((old, hop)) = lru.remove_lru()
        {
            self.copies[old as usize] -= 1;
            self.mesh_copies[old as usize] -= u32::from(hop);
        }
        lru.insert(s, as_hop);
        self.copies[s as usize] += 1;
        self.mesh_copies[s as usize] += u32::from(as_hop);
    }

    /// Pins `s` on `node` (taking it out of the LRU if it was there).
    pub(super) fn pin(&mut self, node: u32, s: u32) {
        if self.pinned[s as usize].contains(&node) {
            return;
        }
        match self.lru[node as usize].remove(&s) {
            Some(hop) => self.mesh_copies[s as usize] += u32::from(!hop),
            None => {
                self.copies[s as usize] += 1;
                self.mesh_copies[s as usize] += 1;
            }
        }
        self.pinned[s as usize].push(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::below;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Copy counts agree with a scan of every store, through evictions
    /// and pins.
    #[test]
    fn copy_counts_follow_evictions_and_pins() {
        let (nodes, stripes) = (5u32, 7u32);
        let mut st = Stores {
            cap: 2,
            lru: (0..nodes).map(|_| LruCache::new_unbounded()).collect(),
            pinned: vec![Vec::new(); stripes as usize],
            copies: vec![0; stripes as usize],
            mesh_copies: vec![0; stripes as usize],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for step in 0..2000 {
            let (node, s) = (below(&mut rng, 5) as u32, below(&mut rng, 7) as u32);
            if step % 97 == 0 {
                st.pin(node, s);
            } else {
                st.cache(node, s, step % 3 == 0);
            }
            for x in 0..stripes {
                let held = (0..nodes).filter(|&n| st.holds(n, x)).count() as u32;
                assert_eq!(st.copies[x as usize], held, "step {step}, stripe {x}");
                let hop = (0..nodes)
                    .filter(|&n| {
                        st.pinned[x as usize].contains(&n)
                            || st.lru[n as usize].peek(&x) == Some(&true)
                    })
                    .count() as u32;
                assert_eq!(st.mesh_copies[x as usize], hop, "step {step}, stripe {x}");
            }
            assert!(st.lru.iter().all(|l| l.len() <= 2));
        }
    }
}
