//! `shoal status`: the local agent's members, ring, store, transfers and
//! open breakers; a table on a terminal, JSON with `--json` or when piped.

use anyhow::{Context, Result, bail};
use clap::Args;
use shoal_agent::status::{STATUS_PATH, Status};
use std::io::IsTerminal;

/// Arguments of `shoal status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Print the agent's JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The local agent's API address.
    #[arg(long, env = "SHOAL_AGENT", default_value = "http://127.0.0.1:7421")]
    agent: String,
}

/// Runs `shoal status`.
pub async fn run(args: StatusArgs) -> Result<()> {
    let url = format!("{}{STATUS_PATH}", args.agent.trim_end_matches('/'));
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("asking the agent at {}", args.agent))?;
    if !resp.status().is_success() {
        bail!("{url}: HTTP {}", resp.status());
    }
    let body = resp.bytes().await?;
    if args.json || !std::io::stdout().is_terminal() {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let s: Status = serde_json::from_slice(&body).context("the agent's status")?;
    print!("{}", table(&s, now_ms()));
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The status as text.
fn table(s: &Status, now: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {} ({} membership): ring {} members, {} alive{}",
        s.name,
        s.membership,
        s.ring_size,
        s.alive,
        if s.draining { ", DRAINING" } else { "" }
    );
    let _ = writeln!(
        out,
        "store {:.1} of {:.1} MiB in {} stripes, hit ratio {:.2}; {} transfers in flight; open breakers: {}",
        mib(s.store.used),
        mib(s.store.budget),
        s.store.entries,
        s.store.hit_ratio,
        s.inflight,
        if s.open_breakers.is_empty() {
            "none".to_owned()
        } else {
            s.open_breakers
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    for p in &s.problems {
        let _ = writeln!(out, "WARNING: {p}");
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<16} {:<21} {:<24} {:<8} {:>12}",
        "NAME", "ID", "ADDRESS", "TOPOLOGY", "STATE", "CHANGED"
    );
    for m in &s.members {
        let changed = if m.changed_ms == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}s ago", now.saturating_sub(m.changed_ms) as f64 / 1e3)
        };
        let state = serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:<21} {:<24} {:<8} {:>12}",
            m.name,
            m.id,
            m.addr.to_string(),
            m.labels.join("/"),
            state,
            changed
        );
    }
    out
}
