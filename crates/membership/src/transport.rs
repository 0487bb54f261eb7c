//! How gossip packets move: real UDP, or an in-memory network that runs
//! under tokio's simulated clock (for tests and the 1,000-node
//! measurement).

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// What the gossip task hands to its transport, in order.
#[derive(Debug)]
pub enum Outgoing {
    /// A packet for an address.
    Packet(SocketAddr, Bytes),
    /// Answered once every packet queued before it has been sent.
    Flush(oneshot::Sender<()>),
}

/// The gossip task's two ends of a transport.
pub struct Transport {
    /// Packets that arrived for this node.
    pub inbound: mpsc::Receiver<Bytes>,
    /// Packets to send; the task never waits on this (a full queue drops,
    /// as a busy network would).
    pub outbound: mpsc::Sender<Outgoing>,
}

/// Packets queued per direction before new ones are dropped.
const QUEUE: usize = 1024;

/// Bytes of the tag a sealed packet ends with.
pub const TAG: usize = 16;

/// The key gossip packets are sealed with, from the cluster token.
pub fn gossip_key(token: &str) -> [u8; 32] {
    blake3::derive_key(
        "shoal 2026-12 gossip packet authentication",
        token.as_bytes(),
    )
}

fn tag(key: &[u8; 32], data: &[u8]) -> [u8; TAG] {
    let mut t = [0u8; TAG];
    t.copy_from_slice(&blake3::keyed_hash(key, data).as_bytes()[..TAG]);
    t
}

/// `data` followed by its tag under `key`.
pub fn seal(key: &[u8; 32], data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + TAG);
    out.extend_from_slice(data);
    out.extend_from_slice(&tag(key, data));
    out.into()
}

/// The packet without its tag, if the tag is right (compared in
/// constant time); `None` for a packet not sealed with `key`.
pub fn open<'a>(key: &[u8; 32], packet: &'a [u8]) -> Option<&'a [u8]> {
    let split = packet.len().checked_sub(TAG)?;
    let (data, got) = packet.split_at(split);
    let want = tag(key, data);
    let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0).then_some(data)
}

/// Binds UDP on `addr` and runs its receive and send loops as tasks.
/// With `key` (see [`gossip_key`]) every packet sent is sealed, and a
/// packet received that is not sealed with the same key is dropped, so
/// only holders of the cluster token take part in gossip.
pub async fn udp(
    addr: SocketAddr,
    max_packet: usize,
    key: Option<[u8; 32]>,
) -> std::io::Result<Transport> {
    let socket = Arc::new(UdpSocket::bind(addr).await?);
    let (in_tx, inbound) = mpsc::channel(QUEUE);
    let (outbound, mut out_rx) = mpsc::channel::<Outgoing>(QUEUE);
    let rx = socket.clone();
    tokio::spawn(async move {
        // One byte more than the limit, so an oversize packet is seen as
        // such (foca refuses it) instead of silently truncated.
        let mut buf = vec![0u8; max_packet + TAG + 1];
        loop {
            match rx.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    let packet = match &key {
                        None => &buf[..n],
                        Some(k) => match open(k, &buf[..n]) {
                            Some(p) => p,
                            None => {
                                tracing::debug!(%from, "gossip packet without a valid seal; dropped");
                                continue;
                            }
                        },
                    };
                    if in_tx.try_send(Bytes::copy_from_slice(packet)).is_err() {
                        if in_tx.is_closed() {
                            return;
                        }
                        tracing::debug!("gossip inbound queue full; dropping a packet");
                    }
                }
                // ICMP errors from an earlier send surface here; they say
                // nothing about this socket.
                Err(e) => tracing::debug!("gossip receive: {e}"),
            }
        }
    });
    tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Outgoing::Packet(to, data) => {
                    let data = match &key {
                        Some(k) => seal(k, &data),
                        None => data,
                    };
                    if let Err(e) = socket.send_to(&data, to).await {
                        tracing::debug!(%to, "gossip send: {e}");
                    }
                }
                Outgoing::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    Ok(Transport { inbound, outbound })
}

/// An in-memory network: every packet arrives after a fixed latency
/// unless a link between the two addresses is cut. Runs on tokio's clock,
/// so a paused runtime simulates thousands of nodes quickly.
#[derive(Clone, Default)]
pub struct MemoryNet {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    nodes: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    cut: std::collections::HashSet<(SocketAddr, SocketAddr)>,
    latency: Duration,
    sent: u64,
}

impl MemoryNet {
    /// A network whose packets take `latency` one way.
    pub fn new(latency: Duration) -> Self {
        let net = MemoryNet::default();
        net.state().latency = latency;
        net
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches a node at `addr`.
    pub fn attach(&self, addr: SocketAddr) -> Transport {
        let (in_tx, inbound) = mpsc::channel(QUEUE);
        self.state().nodes.insert(addr, in_tx);
        let (outbound, mut out_rx) = mpsc::channel::<Outgoing>(QUEUE);
        let net = self.clone();
        tokio::spawn(async move {
            while let Some(out) = out_rx.recv().await {
                match out {
                    Outgoing::Packet(to, data) => net.deliver(addr, to, data),
                    Outgoing::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Transport { inbound, outbound }
    }

    /// Detaches `addr`: packets to it vanish, as to a killed process.
    pub fn detach(&self, addr: SocketAddr) {
        self.state().nodes.remove(&addr);
    }

    /// Cuts (or restores) both directions between `a` and `b`.
    pub fn cut(&self, a: SocketAddr, b: SocketAddr, cut: bool) {
        let mut s = self.state();
        for link in [(a, b), (b, a)] {
            if cut {
                s.cut.insert(link);
            } else {
                s.cut.remove(&link);
            }
        }
    }

    /// Packets sent so far.
    pub fn packets(&self) -> u64 {
        self.state().sent
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        let (target, latency) = {
            let mut s = self.state();
            s.sent += 1;
            if s.cut.contains(&(from, to)) {
                return;
            }
            (s.nodes.get(&to).cloned(), s.latency)
        };
        if let Some(target) = target {
            tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                let _ = target.try_send(data);
            });
        }
    }
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn only_packets_sealed_with_the_key_open() {
        let key = gossip_key("cluster-token");
        let sealed = seal(&key, b"ping");
        assert_eq!(open(&key, &sealed), Some(&b"ping"[..]));
        assert_eq!(open(&gossip_key("another-token"), &sealed), None);
        let mut flipped = sealed.to_vec();
        flipped[1] ^= 1;
        assert_eq!(open(&key, &flipped), None, "a changed byte");
        assert_eq!(open(&key, b"ping"), None, "no seal");
        assert_eq!(open(&key, &sealed[..TAG - 1]), None, "shorter than a tag");
    }
}
