//! `shoal get <url> [--digest sha256:...] [-o FILE]`: fetches an object
//! through the local agent into a file, with a progress bar on a terminal
//! and plain progress lines otherwise.

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Arguments of `shoal get`.
#[derive(Args)]
pub struct GetArgs {
    /// The object's URL at its origin (http or https).
    url: String,
    /// Expected digest of the whole object, `sha256:<64 hex>`.
    #[arg(long)]
    digest: Option<String>,
    /// Where to write it (default: the URL's last path segment).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The local agent's API address.
    #[arg(long, env = "SHOAL_AGENT", default_value = "http://127.0.0.1:7421")]
    agent: String,
}

fn default_output(url: &str) -> PathBuf {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("download");
    PathBuf::from(name)
}

/// How many times `shoal get` starts a transfer that broke over. A stream
/// from the local agent breaks only when the agent gave up on a stripe
/// after sending part of it (a peer's copy failed its checksum, or every
/// source failed); by then the agent has dropped the bad copies, so a
/// fresh start usually succeeds.
const ATTEMPTS: u32 = 3;

/// Runs `shoal get`.
pub async fn run(args: GetArgs) -> Result<()> {
    let mut endpoint =
        reqwest::Url::parse(&format!("{}/v1/object", args.agent.trim_end_matches('/')))
            .with_context(|| format!("bad agent address {:?}", args.agent))?;
    endpoint.query_pairs_mut().append_pair("url", &args.url);
    if let Some(d) = &args.digest {
        endpoint.query_pairs_mut().append_pair("digest", d);
    }
    let out = args.output.unwrap_or_else(|| default_output(&args.url));
    let part = out.with_extension("shoal-part");
    let started = Instant::now();
    let mut attempt = 1;
    let (got, digest) = loop {
        let result = transfer(&endpoint, &args.agent, &part).await;
        let (got, size, digest) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(broken)) if attempt < ATTEMPTS => {
                eprintln!("shoal get: {broken}; starting over ({attempt} of {ATTEMPTS})");
                attempt += 1;
                continue;
            }
            Ok(Err(broken)) => {
                let _ = tokio::fs::remove_file(&part).await;
                bail!("{broken}; gave up after {ATTEMPTS} attempts");
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        if got != size || args.digest.as_ref().is_some_and(|d| *d != digest) {
            let _ = tokio::fs::remove_file(&part).await;
            bail!("received {got} of {size} bytes with {digest}; nothing written");
        }
        break (got, digest);
    };
    tokio::fs::rename(&part, &out)
        .await
        .with_context(|| format!("renaming into {}", out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "shoal get: wrote {} ({got} bytes, {digest}) in {secs:.2} s, {:.1} MB/s",
        out.display(),
        got as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}

/// One transfer into `part`, from its start: `(bytes, expected size,
/// sha256)`, or the inner error when the stream broke part way.
async fn transfer(
    endpoint: &reqwest::Url,
    agent: &str,
    part: &Path,
) -> Result<std::result::Result<(u64, u64, String), String>> {
    let resp = reqwest::Client::new()
        .get(endpoint.clone())
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {agent}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("agent answered {status}: {}", body.trim());
    }
    let size = resp.content_length().unwrap_or(0);
    let mut file = tokio::fs::File::create(part)
        .await
        .with_context(|| format!("creating {}", part.display()))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let mut sha = Sha256::new();
    let mut got = 0u64;
    let mut next_line = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                if let Some(b) = bar {
                    b.abandon();
                }
                return Ok(Err(format!(
                    "transfer broke after {got} of {size} bytes: {e}"
                )));
            }
        };
        sha.update(&chunk);
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", part.display()))?;
        got += chunk.len() as u64;
        match &bar {
            Some(b) => b.set_position(got),
            None if got >= next_line => {
                eprintln!("shoal get: {got} of {size} bytes");
                next_line = got + (size / 10).max(1);
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    file.flush().await?;
    Ok(Ok((
        got,
        size,
        format!("sha256:{}", hex::encode(sha.finalize())),
    )))
}
