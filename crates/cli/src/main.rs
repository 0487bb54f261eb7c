//! `shoal`: the command line. `shoal agent` runs a node's agent;
//! `shoal get` fetches an object through the local agent; `shoal status`
//! shows what the local agent knows; `shoal containerd-config` points
//! containerd at the agent's mirror; `shoal sim` runs the simulator;
//! `shoal demo` shows agents sharing an object on one machine; `shoal
//! bench cluster` measures shoal against its alternatives.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use shoal_agent::AgentConfig;
use shoal_agent::config::PeerConfig;
use shoal_agent::config::mirror::RegistryConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

mod bench;
mod containerd;
mod demo;
mod get;
mod sim;
mod status;

/// shoal: a peer-to-peer, content-addressed pull-through cache.
#[derive(Parser)]
#[command(name = "shoal", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run this node's agent (settings: file, then SHOAL_* variables, then
    /// flags; flags win).
    Agent(Box<AgentArgs>),
    /// Fetch an object through the local agent.
    Get(get::GetArgs),
    /// Show the local agent's members, store, transfers and breakers.
    Status(status::StatusArgs),
    /// Point containerd at the local agent's mirror (hosts.toml per
    /// registry, previous files backed up; --restore puts them back).
    ContainerdConfig(containerd::ContainerdArgs),
    /// Simulate the protocol at fleet scale with the real placement core.
    Sim(sim::SimArgs),
    /// Start agents and an origin on this machine and watch them share an
    /// object (no root, nothing to install).
    Demo(demo::DemoArgs),
    /// Benchmarks on real processes (`shoal bench cluster` needs root).
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct AgentArgs {
    /// TOML settings file.
    #[arg(long, short, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long, env = "SHOAL_NAME")]
    name: Option<String>,
    /// Peer protocol address (default 0.0.0.0:7420).
    #[arg(long, env = "SHOAL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address peers reach this node at (default: --listen).
    #[arg(long, env = "SHOAL_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// IP peers reach this node at, with --listen's port (for a pod: its
    /// node's IP from the downward API).
    #[arg(long, env = "SHOAL_ADVERTISE_IP")]
    advertise_ip: Option<std::net::IpAddr>,
    /// Local API address for `shoal get` (default 127.0.0.1:7421).
    #[arg(long, env = "SHOAL_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// Data directory (default /var/lib/shoal).
    #[arg(long, env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store budget: bytes like 50GiB, or a share like 10% (the default).
    #[arg(long, env = "SHOAL_STORE_BUDGET")]
    store_budget: Option<shoal_store::Budget>,
    /// Stripe size, the same on every node (default 64MiB).
    #[arg(long, env = "SHOAL_STRIPE_SIZE", value_parser = shoal_store::parse_size)]
    stripe_size: Option<u64>,
    /// Copies kept of a stripe fetched from the origin (default 2).
    #[arg(long, env = "SHOAL_MIN_COPIES")]
    min_copies: Option<usize>,
    /// Cluster token that peers must present.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the cluster token.
    #[arg(long, env = "SHOAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Topology labels, widest first: zone,row,rack.
    #[arg(long, env = "SHOAL_LABELS", value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// A static peer, NAME=ADDR[/label/label...]; repeat for each. Any
    /// static peer turns gossip off.
    #[arg(long = "peer", env = "SHOAL_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// A seed to join through: IP:PORT or DNS-NAME:PORT of a peer port,
    /// re-resolved on every attempt; repeat for each.
    #[arg(long = "seed", env = "SHOAL_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// Gossip (UDP) address (default: --listen's IP and port).
    #[arg(long, env = "SHOAL_GOSSIP_LISTEN")]
    gossip_listen: Option<SocketAddr>,
    /// Gossip address peers reach this node at.
    #[arg(long, env = "SHOAL_GOSSIP_ADVERTISE")]
    gossip_advertise: Option<SocketAddr>,
    /// Milliseconds transfers may take to finish after SIGTERM (default 10000).
    #[arg(long, env = "SHOAL_DRAIN_MS")]
    drain_ms: Option<u64>,
    /// The OCI mirror port (default 127.0.0.1:7440).
    #[arg(long, env = "SHOAL_MIRROR_LISTEN")]
    mirror_listen: Option<SocketAddr>,
    /// A registry to mirror, HOST or HOST=URL (`docker.io`,
    /// `registry.local:5000=http://registry.local:5000`); repeat for each.
    /// Others are refused, so clients go to them directly.
    #[arg(long = "registry", env = "SHOAL_REGISTRIES", value_delimiter = ',')]
    registries: Vec<String>,
    /// A docker config.json with credentials per registry.
    #[arg(long, env = "SHOAL_REGISTRY_CREDENTIALS")]
    registry_credentials: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for origins and registries,
    /// besides the system's roots.
    #[arg(long, env = "SHOAL_CA_FILE")]
    ca_file: Option<PathBuf>,
}

fn parse_peer(s: &str) -> Result<PeerConfig> {
    let (name, rest) = s
        .split_once('=')
        .with_context(|| format!("peer {s:?}: expected NAME=ADDR"))?;
    let mut parts = rest.split('/');
    let addr = parts
        .next()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("peer {s:?}: bad address"))?;
    if name.is_empty() {
        bail!("peer {s:?}: empty name");
    }
    Ok(PeerConfig {
        name: name.to_owned(),
        addr,
        labels: parts.map(str::to_owned).collect(),
    })
}

impl AgentArgs {
    fn settings(self) -> Result<AgentConfig> {
        let mut c = match &self.config {
            Some(path) => AgentConfig::from_file(path)?,
            None => AgentConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            name,
            listen,
            api_listen,
            data_dir,
            store_budget,
            stripe_size,
            min_copies,
            labels,
            drain_ms
        );
        if !self.seeds.is_empty() {
            c.seeds = self.seeds;
        }
        if let Some(l) = self.mirror_listen {
            c.mirror.listen = l;
        }
        for r in &self.registries {
            c.mirror
                .registries
                .push(RegistryConfig::parse(r).map_err(anyhow::Error::msg)?);
        }
        if self.registry_credentials.is_some() {
            c.mirror.credentials_file = self.registry_credentials;
        }
        if self.ca_file.is_some() {
            c.ca_file = self.ca_file;
        }
        if self.gossip_listen.is_some() {
            c.gossip_listen = self.gossip_listen;
        }
        if self.gossip_advertise.is_some() {
            c.gossip_advertise = self.gossip_advertise;
        }
        if self.advertise.is_some() {
            c.advertise = self.advertise;
        }
        if self.advertise_ip.is_some() {
            c.advertise_ip = self.advertise_ip;
        }
        if self.token.is_some() {
            c.token = self.token;
        }
        if self.token_file.is_some() {
            c.token_file = self.token_file;
        }
        if !self.peers.is_empty() {
            c.peers = self
                .peers
                .iter()
                .map(|p| parse_peer(p))
                .collect::<Result<_>>()?;
        }
        Ok(c)
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in a pod's log or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    shoal_agent::install_crypto_provider();
    match Cli::parse().cmd {
        Cmd::Agent(args) => {
            let cfg = args.settings()?.resolve()?;
            shoal_agent::run(cfg, shutdown_signal()).await?;
            Ok(())
        }
        Cmd::Get(args) => get::run(args).await,
        Cmd::Status(args) => status::run(args).await,
        Cmd::ContainerdConfig(args) => containerd::run(args),
        Cmd::Sim(args) => sim::run(args),
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Bench(args) => bench::run(args).await,
    }
}
