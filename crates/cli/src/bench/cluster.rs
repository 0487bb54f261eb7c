//! `shoal bench cluster`: the datacenter of [`Testbed`], an origin behind
//! a shaped link, and for each system a rollout of one object to every
//! node at once, timed by processes inside the nodes' namespaces.

use super::net::Testbed;
use super::report::{self, Link, Report, Row, StripeOrigin, Warm};
use super::scrape;
use super::services::{self, Procs};
use crate::demo::origin;
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which link decides a run's result (`--shape`).
#[derive(Clone, Copy, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Node links faster than the origin's: the origin's link is the bound.
    OriginBound,
    /// Node links slower than the origin's and shaped rack uplinks: how
    /// evenly the nodes share the uploads decides.
    NodeBound,
}

/// One rollout of a run (`--systems`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// shoal, cold, every node at once.
    Shoal,
    /// One more node pulls what the fleet holds.
    Warm,
    /// shoal, cold, one node killed half-way.
    Killed,
    /// shoal with rack relays off (`piece_size = 0`), cold.
    ShoalNoRelay,
    /// Every node from the origin.
    Direct,
    /// Every node through a central docker-registry proxy cache.
    CentralCache,
}

impl System {
    /// Every rollout, in the order they run by default.
    pub fn all() -> Vec<System> {
        use System::*;
        vec![Shoal, Warm, Killed, ShoalNoRelay, Direct, CentralCache]
    }
}

/// A `--shape` or `--systems` value as the command line spells it.
fn write_value<T: clap::ValueEnum + std::fmt::Debug>(
    v: &T,
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    match v.to_possible_value() {
        Some(p) => f.write_str(p.get_name()),
        None => write!(f, "{v:?}"),
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value(self, f)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value(self, f)
    }
}

/// The settings of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    /// Which link is meant to decide.
    pub shape: Shape,
    /// Nodes in the rollouts (one more joins for the warm pull).
    pub nodes: usize,
    /// Racks the nodes are spread over, node `i` in rack `i mod racks`.
    pub racks: usize,
    /// Each rack's uplink, Mbit/s each way (`None`: unshaped).
    pub rack_mbit: Option<f64>,
    /// The object's size in bytes.
    pub size: u64,
    /// Stripe size, as the agent takes it.
    pub stripe: String,
    /// Each node's link, Mbit/s each way.
    pub node_mbit: f64,
    /// The origin's link, Mbit/s each way.
    pub origin_mbit: f64,
    /// The central cache's link, Mbit/s each way.
    pub cache_mbit: f64,
    /// The rollouts, in order.
    pub systems: Vec<System>,
    /// Settings every agent reads (`--agent-config`).
    pub agent_config: toml::Table,
    /// Where the run keeps its files.
    #[serde(skip)]
    pub work: PathBuf,
}

impl Settings {
    /// The lower bound on any rollout, seconds: the object through the
    /// slowest of the origin's link, a node's link and (each rack must
    /// take it in once) a rack's uplink.
    pub fn bound(&self) -> f64 {
        let slowest = self
            .origin_mbit
            .min(self.node_mbit)
            .min(self.rack_mbit.unwrap_or(f64::INFINITY));
        (self.size as f64 * 8.0 / 1e6) / slowest
    }
}

const ORIGIN: u8 = 2;
const CACHE: u8 = 3;
const PEER_PORT: u16 = 7400;
const API_PORT: u16 = 7401;
const REPO: &str = "bench/object";
/// Objects on the origin: one per cold shoal rollout, so each is cold.
const OBJECTS: usize = 3;

fn node_ip(bed: &Testbed, i: usize) -> Ipv4Addr {
    bed.ip(10 + i as u8)
}

/// Runs every system and returns the report. Everything started is
/// stopped, and every namespace removed, when this returns (or fails).
pub async fn run(s: &Settings) -> Result<Report> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    std::fs::create_dir_all(&s.work)?;
    let mut bed = Testbed::new()?;
    let mut procs = Procs::default();
    let org = bed.host("org", ORIGIN, s.origin_mbit)?;
    let cch = bed.host("cch", CACHE, s.cache_mbit)?;
    let bridges: Vec<String> = (0..s.racks)
        .map(|r| bed.rack(r, s.rack_mbit))
        .collect::<Result<_>>()?;
    let ns: Vec<String> = (0..=s.nodes)
        .map(|i| {
            bed.host_on(
                &bridges[i % s.racks],
                &format!("n{i}"),
                10 + i as u8,
                s.node_mbit,
            )
        })
        .collect::<Result<_>>()?;
    let (org_ip, cch_ip) = (bed.ip(ORIGIN), bed.ip(CACHE));

    // The origin: nginx for objects, docker-registry for the same bytes
    // as a blob; the central cache proxies the registry.
    let nginx_dir = s.work.join("nginx");
    let www = services::nginx(&mut procs, &org, org_ip, &nginx_dir)?;
    let mut digests = Vec::new();
    for k in 1..=OBJECTS {
        let name = format!("object-{k}.bin");
        let mut f = std::io::BufWriter::new(std::fs::File::create(www.join(&name))?);
        digests.push(origin::write_to(&mut f, &name, s.size)?);
    }
    let reg_dir = s.work.join("registry");
    services::registry(&mut procs, "registry", &org, org_ip, &reg_dir, None)?;
    push_blob(&client, org_ip, &www.join("object-1.bin"), &digests[0]).await?;
    let cache_dir = s.work.join("cache");
    let upstream = format!("http://{org_ip}:5000");
    services::registry(
        &mut procs,
        "cache",
        &cch,
        cch_ip,
        &cache_dir,
        Some(&upstream),
    )?;

    let exe = std::env::current_exe().context("finding the shoal binary")?;
    let (with_relays, no_relay) = (s.work.join("agent.toml"), s.work.join("no-relay.toml"));
    // The agents may fetch the objects from nginx, unless the bench's
    // agent settings name their own origins.
    let mut agent_config = s.agent_config.clone();
    if shoal_agent::config::lookup(&agent_config, "origins.allow").is_none() {
        let allow = toml::Value::Array(vec![format!("http://{org_ip}/").into()]);
        shoal_agent::config::insert(&mut agent_config, "origins.allow", allow);
    }
    std::fs::write(&with_relays, toml::to_string(&agent_config)?)?;
    let mut off = agent_config.clone();
    off.insert("piece_size".into(), toml::Value::Integer(0));
    std::fs::write(&no_relay, toml::to_string(&off)?)?;
    let config = |relays: bool| if relays { &with_relays } else { &no_relay }.as_path();
    let agents = Agents {
        bed: &bed,
        ns: &ns,
        s,
        exe: &exe,
    };
    // Agents run with relays unless the first rollout is without; the
    // no-relay rollout restarts them as it needs.
    let mut relays_on = s.systems.first() != Some(&System::ShoalNoRelay);
    if s.systems
        .iter()
        .any(|&y| y != System::Direct && y != System::CentralCache)
    {
        agents.start(&mut procs, 0..s.nodes, config(relays_on))?;
        wait_joined(&client, &bed, s.nodes, &mut procs).await?;
    }
    let bound = s.bound();
    let object = |k: usize| format!("http://{org_ip}/object-{k}.bin");
    let via_agent = |i: usize, k: usize| {
        format!(
            "http://{}:{API_PORT}/v1/object?url={}&digest={}",
            node_ip(&bed, i),
            object(k),
            digests[k - 1]
        )
    };
    let origin_bytes = |k: usize| services::nginx_bytes(&nginx_dir, &format!("/object-{k}.bin"));
    let stripe_size = shoal_store::parse_size(&s.stripe).unwrap_or(u64::MAX);
    let by_stripe = |k: usize| origin_by_stripe(&bed, &nginx_dir, k, stripe_size, s.nodes);
    let nodes: Vec<usize> = (0..s.nodes).collect();
    let ips: Vec<Ipv4Addr> = nodes.iter().map(|&i| node_ip(&bed, i)).collect();
    let (mut rows, mut warm) = (Vec::new(), None);

    for &system in &s.systems {
        eprintln!("shoal bench cluster: {system}");
        match system {
            System::Shoal | System::ShoalNoRelay => {
                let want_relays = system == System::Shoal;
                if want_relays != relays_on {
                    let config = config(want_relays);
                    agents.restart(&mut procs, s.nodes, config)?;
                    wait_joined(&client, &bed, s.nodes, &mut procs).await?;
                    relays_on = want_relays;
                }
                // A cold object: the first for shoal, the third without
                // relays.
                let k = if want_relays { 1 } else { 3 };
                let before = origin_bytes(k);
                let counted = scrape::totals(&client, &ips, API_PORT).await;
                let links = link_bytes(&bed, &nodes);
                let times = rollout(
                    &exe,
                    &ns,
                    &nodes,
                    |i| via_agent(i, k),
                    &digests[k - 1],
                    None,
                )
                .await?;
                let name = if want_relays {
                    "shoal, cold"
                } else {
                    "shoal, no rack relay"
                };
                let mut row = Row::new(name, &times, origin_bytes(k) - before, s.size, bound);
                row.agents =
                    scrape::delta(&counted, &scrape::totals(&client, &ips, API_PORT).await);
                row.links = links_since(&bed, &nodes, &links);
                row.origin_by_stripe = by_stripe(k);
                rows.push(row);
            }
            System::Warm => {
                // One new node pulls the first object, as the fleet holds
                // it (after `shoal`) or as it fetches it (alone).
                let j = s.nodes;
                agents.start(&mut procs, j..j + 1, config(relays_on))?;
                wait_joined(&client, &bed, s.nodes + 1, &mut procs).await?;
                let t = rollout(&exe, &ns, &[j], |i| via_agent(i, 1), &digests[0], None).await?;
                let warm_s = t.iter().flatten().next().copied().unwrap_or(f64::INFINITY);
                warm = Some(Warm::new(warm_s, s.size, s.node_mbit));
                procs.kill(&format!("agent-n{j}"));
            }
            System::Killed => {
                let victim = s.nodes / 2;
                let kill_after = Duration::from_secs_f64(bound * 0.5);
                let before = origin_bytes(2);
                // The victim's counters go with it: count the others.
                let others: Vec<Ipv4Addr> = (ips.iter().enumerate())
                    .filter(|&(i, _)| i != victim)
                    .map(|(_, &ip)| ip)
                    .collect();
                let counted = scrape::totals(&client, &others, API_PORT).await;
                let links = link_bytes(&bed, &nodes);
                let kill = Some((victim, kill_after, &mut procs));
                let times =
                    rollout(&exe, &ns, &nodes, |i| via_agent(i, 2), &digests[1], kill).await?;
                let mut row = Row::new(
                    "shoal, a node killed",
                    &times,
                    origin_bytes(2) - before,
                    s.size,
                    bound,
                );
                row.note = Some(format!(
                    "n{victim} killed (SIGKILL) {:.1} s in",
                    kill_after.as_secs_f64()
                ));
                row.agents =
                    scrape::delta(&counted, &scrape::totals(&client, &others, API_PORT).await);
                row.links = links_since(&bed, &nodes, &links);
                row.origin_by_stripe = by_stripe(2);
                rows.push(row);
                // Back for what follows.
                agents.start(&mut procs, victim..victim + 1, config(relays_on))?;
                wait_joined(&client, &bed, s.nodes, &mut procs).await?;
            }
            System::Direct => {
                let before = origin_bytes(1);
                let times = rollout(&exe, &ns, &nodes, |_| object(1), &digests[0], None).await?;
                rows.push(Row::new(
                    "direct",
                    &times,
                    origin_bytes(1) - before,
                    s.size,
                    bound,
                ));
            }
            System::CentralCache => {
                let blob = format!("http://{cch_ip}:5000/v2/{REPO}/blobs/{}", digests[0]);
                let before = services::registry_blob_bytes(&reg_dir, &digests[0]);
                let times = rollout(&exe, &ns, &nodes, |_| blob.clone(), &digests[0], None).await?;
                let sent = services::registry_blob_bytes(&reg_dir, &digests[0]) - before;
                rows.push(Row::new(
                    "central cache (registry proxy)",
                    &times,
                    sent,
                    s.size,
                    bound,
                ));
            }
        }
    }

    procs.check().ok();
    Ok(Report::new(s, bound, rows, warm))
}

/// What starting an agent needs.
struct Agents<'a> {
    bed: &'a Testbed,
    ns: &'a [String],
    s: &'a Settings,
    exe: &'a Path,
}

impl Agents<'_> {
    /// Starts the agents of `nodes` with settings file `config`.
    fn start(&self, procs: &mut Procs, nodes: std::ops::Range<usize>, config: &Path) -> Result<()> {
        for i in nodes {
            start_agent(procs, self.bed, &self.ns[i], i, self.s, self.exe, config)?;
        }
        Ok(())
    }

    /// Stops every agent (the warm node's too) and starts the first `n`
    /// again with `config`, on the data they held.
    fn restart(&self, procs: &mut Procs, n: usize, config: &Path) -> Result<()> {
        for i in 0..self.ns.len() {
            procs.kill(&format!("agent-n{i}"));
        }
        self.start(procs, 0..n, config)
    }
}

/// Starts the agent of node `i` in its namespace.
fn start_agent(
    procs: &mut Procs,
    bed: &Testbed,
    ns: &str,
    i: usize,
    s: &Settings,
    exe: &Path,
    config: &Path,
) -> Result<()> {
    let ip = node_ip(bed, i);
    let mut args: Vec<String> = [
        "agent",
        "--name",
        &format!("n{i}"),
        "--listen",
        &format!("{ip}:{PEER_PORT}"),
        "--api-listen",
        &format!("{ip}:{API_PORT}"),
        "--mirror-listen",
        "127.0.0.1:7440",
        "--data-dir",
        &s.work.join(format!("n{i}")).display().to_string(),
        "--token",
        "shoal-bench",
        "--labels",
        &format!("row-0,rack-{}", i % s.racks),
        "--stripe-size",
        &s.stripe,
        "--store-budget",
        "8GiB",
        "--seed",
        &format!("{}:{PEER_PORT}", node_ip(bed, 0)),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(["--config".to_owned(), config.display().to_string()]);
    procs.spawn(
        &format!("agent-n{i}"),
        ns,
        exe,
        &args,
        &s.work.join(format!("n{i}.log")),
    )
}

/// Waits until the first `n` agents each see `n` members alive.
async fn wait_joined(
    client: &reqwest::Client,
    bed: &Testbed,
    n: usize,
    procs: &mut Procs,
) -> Result<()> {
    let started = Instant::now();
    loop {
        procs.check()?;
        let mut joined = 0;
        for i in 0..n {
            let url = format!(
                "http://{}:{API_PORT}{}",
                node_ip(bed, i),
                shoal_agent::status::STATUS_PATH
            );
            if let Ok(r) = client.get(&url).send().await
                && let Ok(st) = r.json::<shoal_agent::status::Status>().await
            {
                joined += usize::from(st.alive == n);
            }
        }
        if joined == n {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the agents did not form one mesh within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pushes the file at `path` as blob `digest` of the origin registry.
async fn push_blob(
    client: &reqwest::Client,
    ip: Ipv4Addr,
    path: &Path,
    digest: &str,
) -> Result<()> {
    let start = client
        .post(format!("http://{ip}:5000/v2/{REPO}/blobs/uploads/"))
        .send()
        .await?;
    let location = start
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("the registry gave no upload location")?
        .to_owned();
    let mut url = reqwest::Url::parse(&format!("http://{ip}:5000"))?.join(&location)?;
    url.query_pairs_mut().append_pair("digest", digest);
    let body = tokio::fs::read(path).await?;
    let done = client.put(url).body(body).send().await?;
    if !done.status().is_success() {
        bail!("pushing the blob: the registry answered {}", done.status());
    }
    Ok(())
}

/// Every node in `who` fetches `url(node)` at once, inside its
/// namespace; returns each one's seconds (`None` for the victim). With
/// `kill`, that node's agent is killed after the given time.
/// What the origin sent of object `k`, by stripe and by the node that
/// asked (each cold rollout has an object of its own).
fn origin_by_stripe(
    bed: &Testbed,
    nginx_dir: &Path,
    k: usize,
    stripe_size: u64,
    nodes: usize,
) -> Vec<StripeOrigin> {
    let names: std::collections::HashMap<String, String> = (0..=nodes)
        .map(|i| (node_ip(bed, i).to_string(), format!("n{i}")))
        .collect();
    let gets = services::nginx_gets(nginx_dir, &format!("/object-{k}.bin"));
    report::by_stripe(
        gets.into_iter().map(|g| {
            let who = names.get(&g.client).cloned().unwrap_or(g.client);
            (g.start, g.bytes, who)
        }),
        stripe_size,
    )
}

/// Each node's link counters, `(sent, received)`, as read now.
fn link_bytes(bed: &Testbed, nodes: &[usize]) -> Vec<Option<(u64, u64)>> {
    nodes
        .iter()
        .map(|i| bed.link_bytes(&format!("n{i}")))
        .collect()
}

/// What each node's link carried since `before` (nodes whose counters
/// could not be read are left out).
fn links_since(bed: &Testbed, nodes: &[usize], before: &[Option<(u64, u64)>]) -> Vec<Link> {
    let after = link_bytes(bed, nodes);
    (before.iter().zip(&after))
        .filter_map(|(b, a)| Some(Link::between((*b)?, (*a)?)))
        .collect()
}

async fn rollout(
    exe: &Path,
    ns: &[String],
    who: &[usize],
    url: impl Fn(usize) -> String,
    digest: &str,
    kill: Option<(usize, Duration, &mut Procs)>,
) -> Result<Vec<Option<f64>>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for &i in who {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns[i]])
            .arg(exe)
            .args(["bench", "fetch", &url(i)])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting a fetch")?;
        tasks.push(tokio::spawn(async move {
            let out = child.wait_with_output().await;
            (started.elapsed().as_secs_f64(), out)
        }));
    }
    let victim = match kill {
        Some((v, after, procs)) => {
            tokio::time::sleep(after).await;
            procs.kill(&format!("agent-n{v}"));
            Some(v)
        }
        None => None,
    };
    let mut times = Vec::new();
    for (k, t) in tasks.into_iter().enumerate() {
        let i = who[k];
        let (secs, out) = t.await?;
        let out = out?;
        if Some(i) == victim {
            times.push(None);
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains(digest) {
            bail!(
                "n{i}'s fetch failed: {}{}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        times.push(Some(secs));
    }
    Ok(times)
}
