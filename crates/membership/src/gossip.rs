//! The gossip task: the one owner of this node's SWIM state (foca), fed by
//! its transport, its timers and commands from the agent.

use crate::config::{ConfigError, GossipConfig};
use crate::identity::Peer;
use crate::roster::{MemberState, Record, Roster};
use crate::transport::{Outgoing, Transport};
use foca::{AccumulatingRuntime, Foca, Member, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

/// Commands the agent sends its gossip task.
enum Cmd {
    /// Applies a roster fetched from a peer in one batch, then announces
    /// this node to `via` if given.
    Join(Vec<Record>, Option<Peer>),
    /// The full membership state with foca's live states.
    Snapshot(oneshot::Sender<Vec<Record>>),
    /// Announces this node's departure, sends it, and stops.
    Leave(oneshot::Sender<()>),
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gossip task has stopped (the node left).
    #[error("gossip has stopped")]
    Stopped,
}

/// The agent's handle on its gossip task.
#[derive(Clone)]
pub struct Gossip {
    me: Peer,
    cmd: mpsc::Sender<Cmd>,
    roster: watch::Receiver<Arc<Roster>>,
}

impl Gossip {
    /// Starts the gossip task for `me` on `transport`. `seed` seeds its
    /// random choices (whom to probe and gossip to).
    pub fn spawn(
        me: Peer,
        cfg: &GossipConfig,
        transport: Transport,
        seed: u64,
    ) -> Result<Gossip, GossipError> {
        let config = cfg.to_foca(MIN_SIZING)?;
        let foca = Foca::new(
            me.clone(),
            config,
            StdRng::seed_from_u64(seed),
            PostcardCodec,
        );
        let mut roster = Roster::default();
        roster.set(&me, MemberState::Alive, now_ms());
        let (tx, roster_rx) = watch::channel(Arc::new(roster.clone()));
        let (cmd, cmd_rx) = mpsc::channel(64);
        let task = Task {
            foca,
            rt: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            transport,
            roster,
            published: tx,
            cfg: cfg.clone(),
            sized: MIN_SIZING,
        };
        tokio::spawn(task.run(cmd_rx));
        Ok(Gossip {
            me,
            cmd,
            roster: roster_rx,
        })
    }

    /// This node's identity.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// The roster now.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster.borrow().clone()
    }

    /// A receiver that sees every new roster.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Roster>> {
        self.roster.clone()
    }

    /// Applies `roster` (fetched from `via`) in one batch and announces
    /// this node to `via`.
    pub async fn join(&self, roster: Vec<Record>, via: Peer) -> Result<(), GossipError> {
        self.cmd
            .send(Cmd::Join(roster, Some(via)))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// Merges `roster` (pulled from a member for anti-entropy) without
    /// announcing.
    pub async fn merge(&self, roster: Vec<Record>) -> Result<(), GossipError> {
        self.cmd
            .send(Cmd::Join(roster, None))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// Every member with foca's current state (suspects included), for the
    /// roster endpoint.
    pub async fn snapshot(&self) -> Result<Vec<Record>, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Snapshot(tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Tells the cluster this node is leaving and waits until that news
    /// has been sent. Gossip stops afterwards.
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Leave(tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type Timers = BinaryHeap<Reverse<(Instant, Timer<Peer>)>>;

struct Task {
    foca: Foca<Peer, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    rt: AccumulatingRuntime<Peer>,
    timers: Timers,
    transport: Transport,
    roster: Roster,
    published: watch::Sender<Arc<Roster>>,
    cfg: GossipConfig,
    /// The cluster size foca's settings were last computed for.
    sized: usize,
}

/// Retransmissions are never sized for fewer members than this, so a
/// cluster that forms all at once spreads every join.
const MIN_SIZING: usize = 64;

impl Task {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        loop {
            let next = self.timers.peek().map(|Reverse((at, _))| *at);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                packet = self.transport.inbound.recv() => match packet {
                    Some(data) => {
                        if let Err(e) = self.foca.handle_data(&data, &mut self.rt) {
                            tracing::debug!("gossip packet: {e}");
                        }
                    }
                    None => return,
                },
                _ = sleep_until(next.unwrap_or(far)), if next.is_some() => self.fire_timers(),
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Join(records, via)) => self.join(records, via),
                    Some(Cmd::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Cmd::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    // Every handle is gone: the agent is stopping.
                    None => return,
                },
            }
            self.drain();
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            if let Err(e) = self.foca.handle_timer(timer, &mut self.rt) {
                tracing::debug!("gossip timer: {e}");
            }
        }
    }

    fn join(&mut self, records: Vec<Record>, via: Option<Peer>) {
        let me = self.foca.identity().name.clone();
        let members: Vec<Member<Peer>> = records
            .into_iter()
            .filter(|r| r.peer.name != me)
            .map(|r| Member::new(r.peer, r.incarnation, r.state.into()))
            .collect();
        if let Err(e) = self
            .foca
            .apply_many(members.into_iter(), false, &mut self.rt)
        {
            tracing::debug!("applying roster: {e}");
        }
        if let Some(via) = via
            && let Err(e) = self.foca.announce(via, &mut self.rt)
        {
            tracing::debug!("announce: {e}");
        }
    }

    fn snapshot(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .foca
            .iter_membership_state()
            .map(|m| Record {
                peer: m.id().clone(),
                incarnation: m.incarnation(),
                state: m.state().into(),
                changed_ms: self
                    .roster
                    .members
                    .get(&m.id().name)
                    .map_or(0, |r| r.changed_ms),
            })
            .collect();
        if let Some(me) = self.roster.members.get(&self.foca.identity().name) {
            out.push(me.clone());
        }
        out
    }

    async fn leave(&mut self) {
        if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
            tracing::debug!("leaving: {e}");
        }
        let me = self.foca.identity().clone();
        self.roster.set(&me, MemberState::Down, now_ms());
        self.drain();
        let (tx, rx) = oneshot::channel();
        if self
            .transport
            .outbound
            .send(Outgoing::Flush(tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Sends what foca queued, schedules its timers and applies its news
    /// to the roster, publishing the roster if it changed.
    fn drain(&mut self) {
        while let Some((to, data)) = self.rt.to_send() {
            let out = Outgoing::Packet(to.gossip, data);
            if self.transport.outbound.try_send(out).is_err() {
                tracing::debug!("gossip outbound queue full; dropping a packet");
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        let mut changed = false;
        while let Some(n) = self.rt.to_notify() {
            changed |= self.apply(n);
        }
        if changed {
            self.resize();
            self.roster.version += 1;
            self.published.send_replace(Arc::new(self.roster.clone()));
        }
    }

    /// Sizes foca's retransmissions (about 4·log10 n per update) to the
    /// cluster as it grows, re-configuring when it doubles.
    fn resize(&mut self) {
        let n = self.roster.members.len().max(MIN_SIZING);
        if n < 2 * self.sized && n >= self.sized {
            return;
        }
        self.sized = n;
        match self.cfg.to_foca(n).map(|c| self.foca.set_config(c)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("gossip config: {e}"),
            Err(e) => tracing::debug!("gossip config: {e}"),
        }
    }

    fn apply(&mut self, n: OwnedNotification<Peer>) -> bool {
        let now = now_ms();
        match n {
            OwnedNotification::MemberUp(p) => self.roster.set(&p, MemberState::Alive, now),
            OwnedNotification::MemberDown(p) => self.roster.set(&p, MemberState::Down, now),
            OwnedNotification::Rename(_, new) => {
                let alive = self.foca.iter_members().any(|m| *m.id() == new);
                let state = if alive {
                    MemberState::Alive
                } else {
                    MemberState::Down
                };
                self.roster.set(&new, state, now)
            }
            OwnedNotification::Rejoin(me) => {
                tracing::warn!(
                    generation = me.generation,
                    "declared down by the cluster; rejoined"
                );
                self.roster.set(&me, MemberState::Alive, now)
            }
            OwnedNotification::Active => !std::mem::replace(&mut self.roster.connected, true),
            OwnedNotification::Idle => std::mem::replace(&mut self.roster.connected, false),
            OwnedNotification::Defunct => {
                tracing::warn!("this node is out of the cluster (left, or declared down)");
                false
            }
        }
    }
}
