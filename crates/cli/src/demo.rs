//! `shoal demo`: shoal working on one machine, with no root and nothing
//! to install. It starts an origin (embedded, or one given with
//! `--origin`) and N real agents on loopback that join one mesh by
//! gossip. Every node then pulls the same object at once, cold; then a
//! second object, with one agent killed (SIGKILL) a third of the way
//! in. For each round it prints every node's time and where its bytes
//! came from, and the origin amplification.

mod fleet;
pub(crate) mod origin;
mod report;

use anyhow::{Context, Result, bail};
use clap::Args;
use fleet::{Counters, Fleet};
use futures_util::StreamExt;
use report::{NodeRow, Round};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `shoal demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Agents to start.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// The object's size.
    #[arg(long, default_value = "256MiB")]
    size: String,
    /// Stripe size.
    #[arg(long, default_value = "16MiB")]
    stripe: String,
    /// Use this origin instead of the embedded one: a URL prefix under
    /// which `round-1.bin` and `round-2.bin` are served with Range support.
    /// Origin bytes are then counted by the agents.
    #[arg(long, value_name = "URL")]
    origin: Option<String>,
    /// Skip the second round (the node killed mid-pull).
    #[arg(long)]
    no_kill: bool,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Where the objects come from.
enum Source {
    Embedded(origin::Origin),
    External(String),
}

impl Source {
    fn url(&self, name: &str) -> String {
        match self {
            Source::Embedded(o) => o.url(name),
            Source::External(prefix) => format!("{prefix}{name}"),
        }
    }

    /// The origin pattern the agents allow: the URL prefix up to its
    /// last `/`.
    fn allow(&self) -> String {
        let prefix = self.url("");
        match prefix.rfind('/') {
            Some(i) if i > "https://".len() => prefix[..=i].to_owned(),
            _ => prefix,
        }
    }

    /// Bytes the embedded origin has sent; `None` for an external one.
    fn sent(&self) -> Option<u64> {
        match self {
            Source::Embedded(o) => Some(o.sent()),
            Source::External(_) => None,
        }
    }
}

/// Runs the demo. Ctrl-C (or SIGTERM) stops it, and everything it
/// started is stopped and removed on the way out.
pub async fn run(args: DemoArgs) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = demo(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the agents are stopped"),
        _ = term.recv() => bail!("terminated; the agents are stopped"),
    }
}

async fn demo(args: DemoArgs) -> Result<()> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    let size = shoal_store::parse_size(&args.size).map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    if size == 0 {
        bail!("--size must be positive");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let source = match &args.origin {
        None => Source::Embedded(origin::Origin::start(size).await?),
        Some(prefix) => Source::External(prefix.clone()),
    };
    let say = |s: String| {
        if !args.json {
            println!("{s}");
        }
    };
    say(format!(
        "# shoal demo: {} agents on loopback, {} objects in {} stripes\n\nStarting the agents and joining them into one mesh...",
        args.nodes, args.size, args.stripe
    ));
    let started = Instant::now();
    let mut fleet = Fleet::start(args.nodes, &args.stripe, &source.allow())?;
    fleet.wait_joined(&client, Duration::from_secs(30)).await?;
    say(format!(
        "{} agents joined in {:.1} s.\n",
        args.nodes,
        started.elapsed().as_secs_f64()
    ));
    let mut rounds = Vec::new();
    let one = round(&client, &mut fleet, &source, "round-1.bin", size, None).await?;
    say(one.text("Round 1: every node pulls the object at once, cold"));
    rounds.push(one);
    if !args.no_kill {
        let victim = args.nodes / 2;
        let two = round(
            &client,
            &mut fleet,
            &source,
            "round-2.bin",
            size,
            Some(victim),
        )
        .await?;
        say(two.text(&format!(
            "Round 2: a new object, every node pulls it at once, and {} is killed (SIGKILL) mid-pull",
            fleet.nodes[victim].name
        )));
        rounds.push(two);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rounds)?);
    }
    Ok(())
}

/// One round: every live node pulls `name` at once; `kill` is killed once
/// a third of all bytes have arrived.
async fn round(
    client: &reqwest::Client,
    fleet: &mut Fleet,
    source: &Source,
    name: &str,
    size: u64,
    kill: Option<usize>,
) -> Result<Round> {
    let url = source.url(name);
    let digest = match source {
        Source::Embedded(_) => Some(origin::digest(name, size)),
        Source::External(_) => None,
    };
    let before_sent = source.sent();
    let mut before = Vec::new();
    for n in &fleet.nodes {
        before.push(Counters::read(client, n).await);
    }
    let received = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut pulls = Vec::new();
    for n in &fleet.nodes {
        let mut endpoint = reqwest::Url::parse(&format!("http://{}/v1/object", n.api))?;
        endpoint.query_pairs_mut().append_pair("url", &url);
        if let Some(d) = &digest {
            endpoint.query_pairs_mut().append_pair("digest", d);
        }
        pulls.push(tokio::spawn(pull(
            client.clone(),
            endpoint,
            received.clone(),
            started,
        )));
    }
    let mut killed_at = None;
    if let Some(victim) = kill {
        let total = size * fleet.nodes.len() as u64;
        while received.load(Ordering::Relaxed) < total / 3 && !pulls.iter().all(|p| p.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        fleet.kill(victim)?;
        killed_at = Some(started.elapsed().as_secs_f64());
    }
    let mut rows = Vec::new();
    for (i, p) in pulls.into_iter().enumerate() {
        let outcome = p.await.context("a pull task failed")?;
        let after = Counters::read(client, &fleet.nodes[i]).await;
        let killed = kill == Some(i);
        rows.push(NodeRow {
            node: fleet.nodes[i].name.clone(),
            killed,
            seconds: outcome.as_ref().map(|o| o.0).ok(),
            bytes: outcome.as_ref().map_or(0, |o| o.1),
            sha256: outcome.as_ref().ok().map(|o| o.2.clone()),
            error: outcome.err().map(|e| format!("{e:#}")),
            counted: (!killed).then(|| after.since(before[i])),
        });
    }
    let round = Round::new(
        name,
        size,
        digest,
        rows,
        killed_at,
        before_sent,
        source.sent(),
    );
    round.check()?;
    Ok(round)
}

/// Reads the object through one agent: (seconds, bytes, sha256).
async fn pull(
    client: reqwest::Client,
    endpoint: reqwest::Url,
    received: Arc<AtomicU64>,
    started: Instant,
) -> Result<(f64, u64, String)> {
    let resp = client.get(endpoint).send().await?;
    if !resp.status().is_success() {
        bail!("the agent answered {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let (mut h, mut n) = (Sha256::new(), 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the stream broke")?;
        h.update(&chunk);
        n += chunk.len() as u64;
        received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Ok((
        started.elapsed().as_secs_f64(),
        n,
        format!("sha256:{}", hex::encode(h.finalize())),
    ))
}
