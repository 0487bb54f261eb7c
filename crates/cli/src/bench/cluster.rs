//! `shoal bench cluster`: the datacenter of [`Testbed`], an origin behind
//! a shaped link, and for each system a rollout of one object to every
//! node at once, timed by processes inside the nodes' namespaces.

use super::net::Testbed;
use super::report::{Report, Row, Warm};
use super::services::{self, Procs};
use crate::demo::origin;
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The settings of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    /// Nodes in the rollouts (one more joins for the warm pull).
    pub nodes: usize,
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
    /// Where the run keeps its files.
    #[serde(skip)]
    pub work: PathBuf,
}

const ORIGIN: u8 = 2;
const CACHE: u8 = 3;
const PEER_PORT: u16 = 7400;
const API_PORT: u16 = 7401;
const REPO: &str = "bench/object";

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
    let ns: Vec<String> = (0..=s.nodes)
        .map(|i| bed.host(&format!("n{i}"), 10 + i as u8, s.node_mbit))
        .collect::<Result<_>>()?;
    let (org_ip, cch_ip) = (bed.ip(ORIGIN), bed.ip(CACHE));

    // The origin: nginx for objects, docker-registry for the same bytes
    // as a blob; the central cache proxies the registry.
    let www = services::nginx(&mut procs, &org, org_ip, &s.work.join("nginx"))?;
    let mut digests = Vec::new();
    for name in ["object-1.bin", "object-2.bin"] {
        let mut f = std::io::BufWriter::new(std::fs::File::create(www.join(name))?);
        digests.push(origin::write_to(&mut f, name, s.size)?);
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
    for (i, n) in ns.iter().enumerate().take(s.nodes) {
        start_agent(&mut procs, &bed, n, i, s, &exe)?;
    }
    wait_joined(&client, &bed, s.nodes, &mut procs).await?;
    let bound = (s.size as f64 * 8.0 / 1e6) / s.origin_mbit.min(s.node_mbit);
    let object = |k: usize| format!("http://{org_ip}/object-{k}.bin");
    let via_agent = |i: usize, k: usize| {
        format!(
            "http://{}:{API_PORT}/v1/object?url={}&digest={}",
            node_ip(&bed, i),
            object(k),
            digests[k - 1]
        )
    };
    let nodes: Vec<usize> = (0..s.nodes).collect();
    let mut rows = Vec::new();

    // shoal, cold.
    let before = services::nginx_bytes(&s.work.join("nginx"), "/object-1.bin");
    let times = rollout(&exe, &ns, &nodes, |i| via_agent(i, 1), &digests[0], None).await?;
    let sent = services::nginx_bytes(&s.work.join("nginx"), "/object-1.bin") - before;
    rows.push(Row::new("shoal, cold", &times, sent, s.size, bound));

    // shoal, one new node's warm pull.
    let j = s.nodes;
    start_agent(&mut procs, &bed, &ns[j], j, s, &exe)?;
    wait_joined(&client, &bed, s.nodes + 1, &mut procs).await?;
    let t = rollout(&exe, &ns, &[j], |i| via_agent(i, 1), &digests[0], None).await?;
    let warm_s = t.iter().flatten().next().copied().unwrap_or(f64::INFINITY);
    let warm = Warm::new(warm_s, s.size, s.node_mbit);

    // shoal, cold again (a new object), one node killed half-way.
    let victim = s.nodes / 2;
    let kill_after = Duration::from_secs_f64(bound * 0.5);
    let before = services::nginx_bytes(&s.work.join("nginx"), "/object-2.bin");
    let kill = Some((victim, kill_after, &mut procs));
    let times = rollout(&exe, &ns, &nodes, |i| via_agent(i, 2), &digests[1], kill).await?;
    let sent = services::nginx_bytes(&s.work.join("nginx"), "/object-2.bin") - before;
    let mut row = Row::new("shoal, a node killed", &times, sent, s.size, bound);
    row.note = Some(format!(
        "n{victim} killed (SIGKILL) {:.1} s in",
        kill_after.as_secs_f64()
    ));
    rows.push(row);

    // Every node straight from the origin.
    let before = services::nginx_bytes(&s.work.join("nginx"), "/object-1.bin");
    let times = rollout(&exe, &ns, &nodes, |_| object(1), &digests[0], None).await?;
    let sent = services::nginx_bytes(&s.work.join("nginx"), "/object-1.bin") - before;
    rows.push(Row::new("direct", &times, sent, s.size, bound));

    // Every node through the central pull-through cache.
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

    procs.check().ok();
    Ok(Report::new(s, bound, rows, warm))
}

/// Starts the agent of node `i` in its namespace.
fn start_agent(
    procs: &mut Procs,
    bed: &Testbed,
    ns: &str,
    i: usize,
    s: &Settings,
    exe: &Path,
) -> Result<()> {
    let ip = node_ip(bed, i);
    let args: Vec<String> = [
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
        &format!("row-0,rack-{}", i % 2),
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
