//! The agent's data-plane benchmarks, on real processes on loopback (nginx
//! from Debian's packages as the origin, `shoal agent` processes as peers).
//! It prints figures; it asserts nothing about time.
//!
//! `cargo bench -p shoal --bench data_plane` runs it at full size (64 MiB
//! stripes, a 1.5 GiB object; about two minutes on two cores).
//! Name `forwarding` (1 to 3) or `stripe-size` (4) after `--` to run only
//! those; `--tls` runs the agents with mutual TLS between peers (the
//! benchmark's client presents a certificate of the same CA). `cargo test
//! --benches` runs it once at toy sizes, so a broken benchmark fails the
//! test command rather than whoever runs it next.
//!
//! 1. A stripe served from one agent's store against nginx serving the same
//!    bytes, one stream each: throughput ratio.
//! 2. A stripe through a 3-hop forward (client → n0 → n1 → n2, where only
//!    n2 holds it) against a direct fetch from n2: throughput and time to
//!    first byte.
//! 3. Peak RSS of an agent relaying 16 concurrent stripes.
//! 4. Stripe size: five agents each `shoal get` the same object at once,
//!    for three stripe sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use shoal_agent::endpoints::stripe::PATH as STRIPE_PATH;
use shoal_agent::proto::{Decoder, Frame, ObjectSpec, StripeRef, StripeRequest, Wire};
use shoal_placement::NodeId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// `https` when the run is with peer TLS (`--tls`), else `http`.
static SCHEME: std::sync::OnceLock<&str> = std::sync::OnceLock::new();

/// With `--tls`: a CA and one certificate for every agent and for the
/// benchmark's own client, the agents' TLS arguments, and that client.
fn with_tls(dir: &std::path::Path) -> (Vec<String>, reqwest::Client) {
    mint_ca(dir, "ca");
    mint_leaf(
        dir,
        "ca",
        "node",
        "node",
        "DNS:node.shoal.test",
        "serverAuth,clientAuth",
    );
    let file = |f: &str| dir.join(f);
    let args = [
        ("--tls-ca-file", "ca.pem"),
        ("--tls-cert-file", "node.pem"),
        ("--tls-key-file", "node.key"),
    ]
    .iter()
    .flat_map(|(flag, f)| [flag.to_string(), file(f).display().to_string()])
    .collect();
    let tls = shoal_agent::tls::PeerTls::new(shoal_agent::tls::TlsFiles {
        ca: file("ca.pem"),
        cert: file("node.pem"),
        key: file("node.key"),
    })
    .unwrap();
    let config = (*tls.client_config().unwrap()).clone();
    let client = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(config)
        .build()
        .unwrap();
    (args, client)
}

/// Sizes for a full run or a smoke run.
struct Sizes {
    stripe: u64,
    trials: usize,
    relayed: usize,
    rollout_object: u64,
    rollout_stripes: [u64; 3],
}

const FULL: Sizes = Sizes {
    stripe: 64 * MIB,
    trials: 5,
    relayed: 16,
    rollout_object: 1024 * MIB,
    rollout_stripes: [16 * MIB, 64 * MIB, 256 * MIB],
};

const SMOKE: Sizes = Sizes {
    stripe: MIB,
    trials: 2,
    relayed: 4,
    rollout_object: 8 * MIB,
    rollout_stripes: [MIB, 2 * MIB, 4 * MIB],
};

/// One timed transfer.
#[derive(Clone, Copy)]
struct Sample {
    bytes: u64,
    ttfb: Duration,
    total: Duration,
}

impl Sample {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.total.as_secs_f64() / 1e6
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn node(i: usize) -> NodeId {
    NodeId::from_name(&format!("n{i}"))
}

fn stripe_request(object: &ObjectSpec, ss: u64, index: u64, path: Vec<NodeId>) -> StripeRequest {
    let stripe = StripeRef {
        object: object.clone(),
        stripe_size: ss,
        index,
    };
    StripeRequest::new(stripe, &path, &[], 120_000)
}

/// Reads one stripe over the peer protocol, decoding frames as a peer
/// does; the first byte is the first DATA frame.
async fn peer_fetch(client: &reqwest::Client, addr: SocketAddr, req: &StripeRequest) -> Sample {
    let scheme = SCHEME.get().copied().unwrap_or("http");
    let url = format!("{scheme}://{addr}{STRIPE_PATH}?{}", req.to_query());
    let start = Instant::now();
    let mut resp = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let mut dec = Decoder::default();
    let (mut bytes, mut ttfb, mut done) = (0u64, None, false);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        dec.push(chunk);
        while let Some(frame) = dec.next_frame().unwrap() {
            match frame {
                Frame::Data(d, _) => {
                    ttfb.get_or_insert_with(|| start.elapsed());
                    bytes += d.len() as u64;
                }
                Frame::End { .. } => done = true,
                Frame::Error(f) => panic!("peer error: {f}"),
                Frame::KeepAlive => {}
            }
        }
    }
    assert!(done, "stream ended without END");
    assert_eq!(bytes, req.stripe.len());
    Sample {
        bytes,
        ttfb: ttfb.unwrap_or_default(),
        total: start.elapsed(),
    }
}

/// Reads a byte range from nginx.
async fn nginx_fetch(client: &reqwest::Client, url: &str, from: u64, len: u64) -> Sample {
    let start = Instant::now();
    let mut resp = client
        .get(url)
        .header("Range", format!("bytes={from}-{}", from + len - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    let (mut bytes, mut ttfb) = (0u64, None);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        ttfb.get_or_insert_with(|| start.elapsed());
        bytes += chunk.len() as u64;
    }
    assert_eq!(bytes, len);
    Sample {
        bytes,
        ttfb: ttfb.unwrap_or_default(),
        total: start.elapsed(),
    }
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, in ticks.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Peak and current resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    shoal_agent::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let tls = std::env::args().any(|a| a == "--tls");
    let (tls_args, client) = if tls {
        let _ = SCHEME.set("https");
        with_tls(pki.path())
    } else {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        (Vec::new(), client)
    };

    println!(
        "shoal data-plane benchmark ({} run{})",
        if full { "full" } else { "smoke" },
        if tls { ", peers over mutual TLS" } else { "" }
    );
    // `cargo bench --bench data_plane -- forwarding` runs only benchmarks
    // 1 to 3; `-- stripe-size` only benchmark 4.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("forwarding") {
        forwarding(&rt, &client, &sizes, &tls_args);
    }
    if wanted("stripe-size") {
        stripe_sizes(&sizes);
    }
}

/// Benchmarks 1 to 3: four agents, stripes warmed on n2 only.
fn forwarding(rt: &tokio::runtime::Runtime, client: &reqwest::Client, s: &Sizes, tls: &[String]) {
    let ss = s.stripe;
    let stripes = 2 * s.trials as u64 + s.relayed as u64;
    let nginx = Nginx::start();
    let url = nginx.put("bench.bin", &random_bytes((stripes * ss) as usize, 11));
    let budget = format!("{}MiB", 2 * stripes * ss / MIB + 64);
    let ss_arg = format!("{}KiB", ss / 1024);
    let mut args = vec![
        "--stripe-size",
        &ss_arg,
        "--store-budget",
        &budget,
        "--min-copies",
        "1",
    ];
    args.extend(tls.iter().map(String::as_str));
    let cluster = Cluster::new(4, &args);
    let addr = |i: usize| cluster.agents[i].peer_addr();
    let object = ObjectSpec {
        url: url.clone(),
        size: stripes * ss,
        validator: None,
        digest: None,
    };
    let req = |i: u64, path: Vec<NodeId>| stripe_request(&object, ss, i, path);

    // Warm every stripe on n2 alone: an empty path makes it the owner.
    rt.block_on(async {
        for i in 0..stripes {
            peer_fetch(client, addr(2), &req(i, Vec::new())).await;
        }
    });
    assert_eq!(nginx.bytes_served("/bench.bin"), stripes * ss);

    // 1 and 2. Alternate the contenders so drift hits all alike.
    let (mut store, mut origin, mut hop3) = (Vec::new(), Vec::new(), Vec::new());
    let pids: Vec<u32> = (0..3)
        .map(|i| cluster.agents[i].pid().as_raw() as u32)
        .collect();
    // CPU seconds: n2 serving from its store; n1 relaying (a middle hop).
    let (mut serve_cpu, mut relay_cpu) = (0.0, 0.0);
    rt.block_on(async {
        for t in 0..s.trials as u64 {
            let mut cached = req(t, Vec::new());
            cached.cached = true;
            let before = cpu_secs(pids[2]);
            store.push(peer_fetch(client, addr(2), &cached).await);
            serve_cpu += cpu_secs(pids[2]) - before;
            origin.push(nginx_fetch(client, &url, t * ss, ss).await);
            let cold = s.trials as u64 + t; // never seen by n0 or n1
            let before = cpu_secs(pids[1]);
            hop3.push(peer_fetch(client, addr(0), &req(cold, vec![node(1), node(2)])).await);
            relay_cpu += cpu_secs(pids[1]) - before;
        }
    });
    let moved_gb = (s.trials as u64 * ss) as f64 / 1e9;
    let tput = |v: &[Sample]| median(v.iter().map(Sample::mb_s).collect());
    let ttfb = |v: &[Sample]| median(v.iter().map(|x| ms(x.ttfb)).collect());
    let chunk_fill_ms = shoal_agent::proto::CHUNK as f64 / (tput(&store) * 1e6) * 1e3;
    println!(
        "\n## Single stream, {} MiB stripe, median of {}\n",
        ss / MIB,
        s.trials
    );
    println!("| source | MB/s | first byte (ms) |");
    println!("| --- | ---: | ---: |");
    println!(
        "| nginx (same bytes, Range GET) | {:.0} | {:.2} |",
        tput(&origin),
        ttfb(&origin)
    );
    println!(
        "| agent store, direct | {:.0} | {:.2} |",
        tput(&store),
        ttfb(&store)
    );
    println!(
        "| 3-hop forward (n0 → n1 → n2) | {:.0} | {:.2} |",
        tput(&hop3),
        ttfb(&hop3)
    );
    println!();
    println!(
        "store / nginx throughput: {:.2} (goal ≥ 0.8)",
        tput(&store) / tput(&origin)
    );
    println!(
        "3-hop / direct throughput: {:.2} (goal ≥ 0.7)",
        tput(&hop3) / tput(&store)
    );
    println!(
        "first byte added per forwarding hop: {:.2} ms, of which one chunk's fill is {:.2} ms (goal: ≤ 1 ms beyond it)",
        (ttfb(&hop3) - ttfb(&store)) / 2.0,
        chunk_fill_ms
    );

    println!(
        "CPU per GB: {:.2} s serving from the store, {:.2} s relaying as a middle hop \
         (all agents and the client share this machine's cores, so the 3-hop \
         figure is bounded by the sum; on separate nodes each hop is bounded by its own)",
        serve_cpu / moved_gb,
        relay_cpu / moved_gb
    );

    // 3. n3 relays `relayed` stripes at once from n2 (it has none of them).
    let pid = cluster.agents[3].pid().as_raw() as u32;
    let (_, before) = rss_mib(pid);
    let first = 2 * s.trials as u64;
    let start = Instant::now();
    rt.block_on(async {
        let fetches = (first..stripes).map(|i| {
            let r = req(i, vec![node(2)]);
            async move { peer_fetch(client, addr(3), &r).await }
        });
        futures_util::future::join_all(fetches).await
    });
    let took = start.elapsed();
    let (peak, _) = rss_mib(pid);
    println!(
        "\n## Relay memory: {} concurrent {} MiB stripes through one agent\n",
        s.relayed,
        ss / MIB
    );
    println!(
        "| RSS before (MiB) | peak RSS (MiB) | growth per stream (MiB) | stripe (MiB) | aggregate MB/s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {before:.1} | {peak:.1} | {:.2} | {} | {:.0} |",
        (peak - before).max(0.0) / s.relayed as f64,
        ss / MIB,
        (s.relayed as u64 * ss) as f64 / took.as_secs_f64() / 1e6
    );
}

/// Benchmark 4: five agents pull one object at once, per stripe size.
fn stripe_sizes(s: &Sizes) {
    println!(
        "\n## Stripe size: 5 agents, {} MiB object, all `shoal get` at once\n",
        s.rollout_object / MIB
    );
    println!("| stripe (MiB) | stripes | makespan (s) | slowest get MB/s | origin amplification |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let nginx = Nginx::start();
    let data = random_bytes(s.rollout_object as usize, 12);
    let digest = sha256(&data);
    for (k, &ss) in s.rollout_stripes.iter().enumerate() {
        let name = format!("rollout-{k}.bin");
        let url = nginx.put(&name, &data);
        let ss_arg = format!("{}KiB", ss / 1024);
        let budget = format!("{}MiB", 2 * s.rollout_object / MIB + 64);
        let cluster = Cluster::new(5, &["--stripe-size", &ss_arg, "--store-budget", &budget]);
        let start = Instant::now();
        let gets: Vec<_> = (0..5)
            .map(|i| cluster.spawn_get(i, &url, Some(&digest)))
            .collect();
        for (child, out) in gets {
            let (ok, err) = finish(child, &out);
            assert!(ok, "get failed: {err}");
        }
        let makespan = start.elapsed().as_secs_f64();
        let origin = nginx.bytes_served(&format!("/{name}"));
        println!(
            "| {} | {} | {makespan:.2} | {:.0} | {:.2} |",
            ss as f64 / MIB as f64,
            s.rollout_object.div_ceil(ss),
            s.rollout_object as f64 / makespan / 1e6,
            origin as f64 / s.rollout_object as f64
        );
    }
}
