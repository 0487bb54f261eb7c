//! `shoal`: the command line. `shoal agent` runs a node's agent;
//! `shoal get` fetches an object through the local agent; `shoal status`
//! shows what the local agent knows; `shoal containerd-config` points
//! containerd at the agent's mirror; `shoal sim` runs the simulator;
//! `shoal demo` shows agents sharing an object on one machine; `shoal
//! bench cluster` measures shoal against its alternatives.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Run this node's agent (settings: defaults, then the file, then
    /// SHOAL_* variables, then flags; later wins, key by key).
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

/// The agent's flags. Each flag's id is the key it sets in the settings
/// file (`mirror.listen` for `--mirror-listen`), so [`agent_settings`]
/// turns whatever the command line and the environment set into one more
/// layer over the file, by the same rule for every flag; the fields are
/// read that way, by id, rather than one by one. Defaults are not written
/// here: `--help` shows each from `config/defaults.toml`.
#[derive(Args)]
#[allow(dead_code)]
struct AgentArgs {
    /// TOML settings file.
    #[arg(long, short, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's name [default: the host name].
    #[arg(long, env = "SHOAL_NAME")]
    name: Option<String>,
    /// Peer protocol address.
    #[arg(long, env = "SHOAL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address peers reach this node at [default: --listen].
    #[arg(long, env = "SHOAL_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// IP peers reach this node at, with --listen's port (for a pod: its
    /// node's IP from the downward API).
    #[arg(long, env = "SHOAL_ADVERTISE_IP")]
    advertise_ip: Option<std::net::IpAddr>,
    /// Local API address for `shoal get`.
    #[arg(long, env = "SHOAL_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store budget: bytes like 50GiB, or a share of the filesystem like 10%.
    #[arg(long, env = "SHOAL_STORE_BUDGET")]
    store_budget: Option<shoal_store::Budget>,
    /// Stripe size, the same on every node.
    #[arg(long, env = "SHOAL_STRIPE_SIZE", value_parser = shoal_store::parse_size)]
    stripe_size: Option<u64>,
    /// Copies kept of a stripe fetched from the origin.
    #[arg(long, env = "SHOAL_MIN_COPIES")]
    min_copies: Option<usize>,
    /// Cluster token that peers must present.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the cluster token (setting this and a token anywhere
    /// is an error).
    #[arg(long, env = "SHOAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Topology labels, widest first: zone,row,rack.
    #[arg(long, env = "SHOAL_LABELS", value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// A static peer, NAME=ADDR[/label/label...]; repeat for each. Any
    /// static peer turns gossip off.
    #[arg(id = "peers", long = "peer", env = "SHOAL_PEERS", value_delimiter = ',', value_parser = PeerConfig::parse)]
    peers: Vec<PeerConfig>,
    /// A seed to join through: IP:PORT or DNS-NAME:PORT of a peer port,
    /// re-resolved on every attempt; repeat for each.
    #[arg(
        id = "seeds",
        long = "seed",
        env = "SHOAL_SEEDS",
        value_delimiter = ','
    )]
    seeds: Vec<String>,
    /// Gossip (UDP) address [default: --listen's IP and port].
    #[arg(long, env = "SHOAL_GOSSIP_LISTEN")]
    gossip_listen: Option<SocketAddr>,
    /// Gossip address peers reach this node at.
    #[arg(long, env = "SHOAL_GOSSIP_ADVERTISE")]
    gossip_advertise: Option<SocketAddr>,
    /// Milliseconds transfers may take to finish after SIGTERM.
    #[arg(long, env = "SHOAL_DRAIN_MS")]
    drain_ms: Option<u64>,
    /// The OCI mirror port.
    #[arg(
        id = "mirror.listen",
        long = "mirror-listen",
        env = "SHOAL_MIRROR_LISTEN"
    )]
    mirror_listen: Option<SocketAddr>,
    /// A registry to mirror, HOST or HOST=URL (`docker.io`,
    /// `registry.local:5000=http://registry.local:5000`); repeat for each.
    /// Others are refused, so clients go to them directly.
    #[arg(id = "mirror.registries", long = "registry", env = "SHOAL_REGISTRIES", value_delimiter = ',', value_parser = RegistryConfig::parse)]
    registries: Vec<RegistryConfig>,
    /// A docker config.json with credentials per registry.
    #[arg(
        id = "mirror.credentials_file",
        long = "registry-credentials",
        env = "SHOAL_REGISTRY_CREDENTIALS"
    )]
    registry_credentials: Option<PathBuf>,
    /// Mutual TLS between peers: the cluster CA's PEM bundle (with
    /// --tls-cert-file and --tls-key-file).
    #[arg(id = "tls.ca_file", long = "tls-ca-file", env = "SHOAL_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// This node's certificate chain (PEM) for peer TLS.
    #[arg(
        id = "tls.cert_file",
        long = "tls-cert-file",
        env = "SHOAL_TLS_CERT_FILE"
    )]
    tls_cert_file: Option<PathBuf>,
    /// This node's private key (PEM) for peer TLS.
    #[arg(id = "tls.key_file", long = "tls-key-file", env = "SHOAL_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Serve every local mirror client whatever the registry would let it
    /// read: for single-tenant nodes only (see docs/architecture.md).
    #[arg(
        id = "mirror.trust_local_clients",
        long = "trust-local-clients",
        env = "SHOAL_TRUST_LOCAL_CLIENTS",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    trust_local_clients: Option<bool>,
    /// Extra CA certificates (PEM) trusted for origins and registries,
    /// besides the system's roots.
    #[arg(long, env = "SHOAL_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// An origin `shoal get` and /v1/object may read:
    /// [SCHEME://]HOST[:PORT][/PATH], HOST may be *.domain; repeat for
    /// each. None: only mirrored registries. Loopback, link-local and
    /// this node's addresses need their host named exactly.
    #[arg(
        id = "origins.allow",
        long = "allow-origin",
        env = "SHOAL_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    allow_origins: Vec<String>,
}

/// The command line, with each agent flag's default from
/// `config/defaults.toml` shown in its help.
fn command() -> clap::Command {
    let defaults = shoal_agent::config::defaults();
    Cli::command().mut_subcommand("agent", |mut agent| {
        let ids: Vec<String> = agent
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        for id in ids {
            let shown = match shoal_agent::config::lookup(&defaults, &id) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Array(a)) if a.is_empty() => continue,
                Some(other) => other.to_string(),
                None => continue,
            };
            agent = agent.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            });
        }
        agent
    })
}

/// The agent's settings: the defaults, the file named by `--config`, then
/// every flag or `SHOAL_*` variable that was given (a flag over its
/// variable, as clap reads them), as one layer keyed like the file.
fn agent_settings(m: &clap::ArgMatches) -> Result<AgentConfig> {
    use clap::parser::ValueSource;
    use toml::Value;
    let defaults = shoal_agent::config::defaults();
    let mut layer = toml::Table::new();
    let agent = command();
    let args = agent
        .find_subcommand("agent")
        .into_iter()
        .flat_map(|c| c.get_arguments());
    for id in args.map(|a| a.get_id().as_str()) {
        let given = matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if id == "config" || !given {
            continue;
        }
        // Settings are TOML, which is UTF-8: a value that is not (a path)
        // is refused rather than changed.
        let raw: Vec<String> = m
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| v.to_str().map(str::to_owned))
            .collect::<Option<_>>()
            .with_context(|| format!("the value of --{id} is not UTF-8"))?;
        // Each value as the file would write it: the type of the key's
        // default, else text; a list's items as their own settings parse
        // them.
        let item = |text: &str| -> Result<Value> {
            Ok(match id {
                "peers" => Value::try_from(PeerConfig::parse(text).map_err(anyhow::Error::msg)?)?,
                "mirror.registries" => {
                    Value::try_from(RegistryConfig::parse(text).map_err(anyhow::Error::msg)?)?
                }
                _ => Value::String(text.to_owned()),
            })
        };
        let value = match shoal_agent::config::lookup(&defaults, id) {
            Some(Value::Integer(_)) => Value::Integer(
                raw.concat()
                    .parse()
                    .with_context(|| format!("--{id}: not a whole number below 2^63"))?,
            ),
            Some(Value::Boolean(_)) => Value::Boolean(
                raw.concat()
                    .parse()
                    .with_context(|| format!("--{id}: not true or false"))?,
            ),
            Some(Value::Array(_)) => {
                Value::Array(raw.iter().map(|r| item(r)).collect::<Result<_>>()?)
            }
            _ => item(&raw.concat())?,
        };
        shoal_agent::config::insert(&mut layer, id, value);
    }
    let file = m.get_one::<PathBuf>("config");
    Ok(AgentConfig::load(file.map(PathBuf::as_path), layer)?)
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
    let matches = command().get_matches();
    match Cli::from_arg_matches(&matches)?.cmd {
        Cmd::Agent(_) => {
            let m = matches
                .subcommand_matches("agent")
                .context("the agent's flags")?;
            let cfg = agent_settings(m)?.resolve()?;
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
