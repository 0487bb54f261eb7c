//! Rack relays with agents in this process (see `common`): a whole fleet
//! pulling one object at once imports each piece into each rack once, and
//! a relay that breaks mid-piece costs its rack a retry, not the pull.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use shoal_agent::metrics::{Source, SourceLabels};
use shoal_agent::proto::{ObjectSpec, StripeRef};
use shoal_placement::{Labels, Member, NodeId, PlacementConfig, View};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Agent `n{i}`'s labels: zone, row and rack, `per_rack` agents a rack.
fn labels(name: &str, per_rack: usize) -> Vec<String> {
    let i: usize = name.trim_start_matches('n').parse().unwrap();
    let rack = i / per_rack;
    vec![
        "z".into(),
        format!("row{}", rack % 2),
        format!("rack{rack}"),
    ]
}

/// `racks` racks of `per_rack` labelled agents, 1 MiB stripes cut into
/// `piece`-byte pieces (0: no rack relays).
async fn fleet(racks: usize, per_rack: usize, piece: u64) -> Cluster {
    fleet_via(racks, per_rack, piece, |_, _, real| real).await
}

/// As [`fleet`], agent `i` reaching agent `j` at `route(i, j, real)`.
async fn fleet_via(
    racks: usize,
    per_rack: usize,
    piece: u64,
    route: impl Fn(usize, usize, std::net::SocketAddr) -> std::net::SocketAddr,
) -> Cluster {
    let tweak = |c: &mut shoal_agent::AgentConfig| {
        c.piece_size = piece;
        c.labels = labels(&c.name, per_rack);
        for p in &mut c.peers {
            p.labels = labels(&p.name, per_rack);
        }
    };
    cluster_with(racks * per_rack, MIB, tweak, route).await
}

/// The agents' view of the fleet, built by the placement core as each
/// agent builds its own.
fn view(n: usize, per_rack: usize) -> View {
    let members = (0..n).map(|i| {
        let name = format!("n{i}");
        let labels = Labels::new(labels(&name, per_rack));
        Member::new(name, labels)
    });
    View::with_members(PlacementConfig::default(), members).unwrap()
}

/// What each rack's relays should pull along their own paths, when every
/// relay is up, and what its members may fetch whole.
#[derive(Default, Debug)]
struct Expect {
    /// Pieces whose relay gets no stripe request from a path: its flight
    /// is pieced, so it pulls the piece along its path, once.
    relayed_min: u64,
    /// Plus pieces whose relay is an L1 member (it may have fetched the
    /// whole stripe for a path instead). Relays that are first hops or
    /// owners (the hop set) never pull pieces.
    relayed_max: u64,
    /// Stripe bytes the rack's hop-set and L1 members may fetch whole.
    whole: u64,
}

/// [`Expect`] for each rack, from the placement core.
fn expected(c: &Cluster, spec: &ObjectSpec, racks: usize, per_rack: usize) -> Vec<Expect> {
    let v = view(racks * per_rack, per_rack);
    let id = |i: usize| NodeId::from_name(&format!("n{i}"));
    let piece = c.agents[0].node.cfg.piece_size;
    let mut out: Vec<Expect> = (0..racks).map(|_| Expect::default()).collect();
    for s in 0..c.stripes(spec) {
        let stripe = c.stripe(spec, s);
        let (key, len) = (stripe.key(), stripe.len());
        let hops = v.hop_set(key);
        let mut whole = hops.clone();
        // Relays that go through the finger sets may find an L1 member
        // fetching the whole stripe for a path; relays that ask the owner
        // directly pass no L1 member.
        if !v.relays_ask_owner() {
            for h2 in v.l2(key) {
                whole.extend(v.l1(key, h2));
            }
        }
        for (r, want) in out.iter_mut().enumerate() {
            let members: Vec<NodeId> = (r * per_rack..(r + 1) * per_rack).map(id).collect();
            want.whole += len * members.iter().filter(|m| whole.contains(m)).count() as u64;
            for p in 0..len.div_ceil(piece) {
                let bytes = (len - p * piece).min(piece);
                let plan = v.relay_plan(
                    members[0],
                    stripe.object_key(),
                    &stripe.object_stripes(),
                    stripe.pieces_in_object(piece),
                );
                let relay = plan.relays(&v, stripe.piece_in_object(piece, p))[0];
                if !hops.contains(&relay) {
                    want.relayed_max += bytes;
                }
                if !whole.contains(&relay) {
                    want.relayed_min += bytes;
                }
            }
        }
    }
    out
}

fn bytes(c: &Cluster, i: usize, source: Source) -> u64 {
    c.agents[i]
        .node
        .metrics
        .served_bytes
        .get_or_create(&SourceLabels { source })
        .get()
}

async fn read_all(c: &Cluster, url: &str, data: &[u8]) {
    let digest = sha256(data);
    let reads: Vec<_> = c
        .agents
        .iter()
        .map(|a| {
            let (api, url, digest) = (a.api, url.to_owned(), digest.clone());
            tokio::spawn(async move { read(api, &url, Some(&digest)).await })
        })
        .collect();
    for (i, r) in reads.into_iter().enumerate() {
        let got = r.await.unwrap().unwrap_or_else(|e| panic!("n{i}: {e}"));
        assert!(got == data, "n{i} read the object");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_pulling_at_once_imports_each_piece_into_each_rack_once() {
    let (racks, per_rack) = (4, 8);
    let data = random_bytes(16 * MIB as usize, 7);
    let (url, origin) = origin(data.clone()).await;
    // Without relays first: what each rack imports then.
    let c = fleet(racks, per_rack, 0).await;
    read_all(&c, &url, &data).await;
    origin.assert_served_once();
    let imports = |c: &Cluster, r: usize| -> u64 {
        (r * per_rack..(r + 1) * per_rack)
            .map(|i| bytes(c, i, Source::Peer) + bytes(c, i, Source::Origin))
            .sum()
    };
    let before: Vec<u64> = (0..racks).map(|r| imports(&c, r)).collect();
    c.stop().await;
    origin.gets.lock().unwrap().clear();

    let c = fleet(racks, per_rack, 256 * KIB).await;
    read_all(&c, &url, &data).await;
    origin.assert_served_once();
    let want = expected(&c, &spec(&url, &data), racks, per_rack);
    for (r, want) in want.into_iter().enumerate() {
        let sum = |f: &dyn Fn(usize) -> u64| (r * per_rack..(r + 1) * per_rack).map(f).sum::<u64>();
        let relayed = sum(&|i| c.agents[i].node.metrics.rack_relay_bytes.get());
        let imported = imports(&c, r);
        let within = sum(&|i| bytes(&c, i, Source::Rack));
        eprintln!(
            "rack {r}: relayed {relayed} {want:?}, imported {imported} (without relays {}), within {within}",
            before[r]
        );
        assert!(
            imported < before[r],
            "rack {r}: imported {imported} bytes with relays, {} without",
            before[r]
        );
        assert!(
            (want.relayed_min..=want.relayed_max).contains(&relayed),
            "rack {r}: its relays pulled {relayed} bytes along their paths; each piece once is {want:?}"
        );
        assert!(
            imported <= want.relayed_max + want.whole,
            "rack {r}: imported {imported} bytes, more than its relays and whole fetches {want:?}"
        );
        assert!(within > 0, "rack {r}: members pulled from their relays");
    }
    c.stop().await;
}

/// A relay that goes silent in the middle of the rollout (its peers reach
/// it through a proxy that stops forwarding, while membership still says
/// it is alive) costs its rack a stall per piece it was serving, then its
/// breaker: every other node still reads the whole object, nothing more
/// comes from the origin, and its rack's next-ranked members pulled the
/// pieces it had been relaying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_goes_silent_mid_piece_costs_a_stall_not_a_pull() {
    let (racks, per_rack) = (4, 8);
    let data = random_bytes(16 * MIB as usize, 11);
    let (url, origin) = origin(data.clone()).await;
    // The victim: in rack 0, owner of no stripe (so its loss costs no
    // origin bytes), and the relay ranked first for the most pieces.
    let v = view(racks * per_rack, per_rack);
    let object = spec(&url, &data);
    let stripes: Vec<_> = (0..object.size.div_ceil(MIB))
        .map(|index| StripeRef {
            object: object.clone(),
            stripe_size: MIB,
            index,
        })
        .collect();
    let id = |i: usize| NodeId::from_name(&format!("n{i}"));
    let plan = v.relay_plan(
        id(0),
        stripes[0].object_key(),
        &stripes[0].object_stripes(),
        stripes[0].pieces_in_object(256 * KIB),
    );
    let victim = (0..per_rack)
        .filter(|&i| stripes.iter().all(|s| v.owner(s.key()) != Some(id(i))))
        .max_by_key(|&i| {
            stripes
                .iter()
                .flat_map(|s| (0..4).map(move |p| (s, p)))
                .filter(|&(s, p)| {
                    let piece = s.piece_in_object(256 * KIB, p);
                    plan.relays(&v, piece)[0] == id(i) && !v.hop_set(s.key()).contains(&id(i))
                })
                .count()
        })
        .expect("a member of rack 0 owns no stripe");
    let target = Arc::new(OnceLock::new());
    let dark = Arc::new(AtomicBool::new(false));
    let proxy = darkening_proxy(target.clone(), dark.clone()).await;
    let c = fleet_via(racks, per_rack, 256 * KIB, |_, j, real| {
        if j == victim {
            let _ = target.set(real);
            proxy
        } else {
            real
        }
    })
    .await;
    let digest = sha256(&data);
    let reads: Vec<_> = (0..racks * per_rack)
        .filter(|&i| i != victim)
        .map(|i| {
            let (api, url, digest) = (c.agents[i].api, url.clone(), digest.clone());
            tokio::spawn(async move { (i, read(api, &url, Some(&digest)).await) })
        })
        .collect();
    // Dark once the victim is relaying.
    let victim_node = c.agents[victim].node.clone();
    for _ in 0..2000 {
        if victim_node
            .metrics
            .served_bytes
            .get_or_create(&SourceLabels {
                source: Source::Rack,
            })
            .get()
            > 0
            || victim_node.metrics.rack_relay_bytes.get() > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    dark.store(true, Ordering::SeqCst);
    for r in reads {
        let (i, got) = r.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("n{i}: {e}"));
        assert!(got == data, "n{i} read the object");
    }
    origin.assert_served_once();
    // Waits on the silent relay ended by a stall (mid-stream) or a
    // first-byte timeout (a request it never answered).
    let failures = |kind: &str| -> u64 {
        let labels = shoal_agent::metrics::FailureLabels { kind: kind.into() };
        (0..racks * per_rack)
            .map(|i| {
                c.agents[i]
                    .node
                    .metrics
                    .peer_failures
                    .get_or_create(&labels)
                    .get()
            })
            .sum()
    };
    let (stalls, timeouts) = (failures("stall"), failures("timeout"));
    eprintln!("victim n{victim}; stalls {stalls}, timeouts {timeouts}");
    assert!(
        stalls + timeouts > 0,
        "the silent relay was waited on, then given up"
    );
    c.stop().await;
}
