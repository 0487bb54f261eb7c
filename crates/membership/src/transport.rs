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

/// Binds UDP on `addr` and runs its receive and send loops as tasks.
pub async fn udp(addr: SocketAddr, max_packet: usize) -> std::io::Result<Transport> {
    let socket = Arc::new(UdpSocket::bind(addr).await?);
    let (in_tx, inbound) = mpsc::channel(QUEUE);
    let (outbound, mut out_rx) = mpsc::channel::<Outgoing>(QUEUE);
    let rx = socket.clone();
    tokio::spawn(async move {
        // One byte more than the limit, so an oversize packet is seen as
        // such (foca refuses it) instead of silently truncated.
        let mut buf = vec![0u8; max_packet + 1];
        loop {
            match rx.recv_from(&mut buf).await {
                Ok((n, _)) => {
                    if in_tx.try_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
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
