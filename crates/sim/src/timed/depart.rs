//! A node vanishing mid-run: what it was receiving stops, what it was
//! sending falls silent, and each receiver, after the stall timeout,
//! asks again along its own path from the bytes it already has (as the
//! agent resumes a broken stream with `from` set to the verified bytes).

use super::net::End;
use super::{Engine, FETCHING};

/// A transfer cut off by its sender's death, due to resume.
pub(super) struct Resume {
    /// When the receiver gives up on the silent sender.
    at: f64,
    /// The receiver.
    node: u32,
    /// The stripe.
    stripe: u32,
    /// Bytes the receiver has.
    from: f64,
    /// The sender that vanished.
    dead: u32,
}

impl Engine<'_> {
    /// Node `v` vanishes now, unannounced; the fleet detects it
    /// `detect_after` seconds later.
    pub(super) fn depart(&mut self, v: u32, detect_after: f64) {
        let vi = v as usize;
        if self.dead[vi] {
            return;
        }
        self.dead[vi] = true;
        self.out.left_s[vi] = self.now;
        self.detect_at[vi] = self.now + detect_after;
        let stall = self.cfg.failures.stall_s;
        let mut i = 0;
        while i < self.flows.len() {
            let f = &self.flows[i];
            if f.src == End::Node(v) {
                self.out.broken += 1;
                self.out.stale_wait_s += stall;
                self.resumes.push(Resume {
                    at: self.now + stall,
                    node: f.dst,
                    stripe: f.stripe,
                    from: f.sent,
                    dead: v,
                });
                self.drop_flow(i);
            } else if f.dst == v {
                self.drop_flow(i);
            } else {
                i += 1;
            }
        }
    }

    /// When the next resume is due (infinite for none).
    pub(super) fn next_resume(&self) -> f64 {
        self.resumes
            .iter()
            .map(|r| r.at)
            .fold(f64::INFINITY, f64::min)
    }

    /// Resumes every broken transfer whose stall timeout has passed: the
    /// receiver's breaker for the dead sender opens, and it fetches the
    /// rest of the stripe along its own path.
    pub(super) fn resume_due(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        self.resumes.retain(|r| {
            let ready = r.at <= now;
            if ready {
                due.push((r.node, r.stripe, r.from, r.dead));
            }
            !ready
        });
        // In the order they broke, so runs stay deterministic.
        for (node, s, from, dead) in due {
            let slot = self.slot(node, s);
            if self.dead[node as usize] || self.state[slot] != FETCHING {
                continue;
            }
            self.breakers.insert((node, dead));
            self.out.resumes += 1;
            let path = self.view.path(
                self.ids[node as usize],
                self.keys[s as usize],
                &mut self.resume_coins,
            );
            self.delay = 0.0;
            self.fetch(node, s, from, &path);
        }
    }
}
