//! The processes a benchmark runs inside its namespaces: nginx and
//! docker-registry as the origin, docker-registry in proxy mode as the
//! central cache, and shoal agents. Each writes its log under the run's
//! work directory; dropping [`Procs`] kills every one still running.

use anyhow::{Context, Result, bail};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Processes started in namespaces, by name.
#[derive(Default)]
pub struct Procs {
    children: Vec<(String, Child, PathBuf)>,
}

impl Procs {
    /// Starts `cmd args` inside `ns` as `name`, its output in `log`.
    pub fn spawn(
        &mut self,
        name: &str,
        ns: &str,
        cmd: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<()> {
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(cmd)
            .args(args)
            // Errors, not backtraces, in the log `check` quotes.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_owned(), child, log.to_owned()));
        Ok(())
    }

    /// Kills `name` with SIGKILL (as a node dies) and reaps it.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _, _)| n == name) {
            let (_, mut c, _) = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails if a process exited on its own, with the end of its log.
    pub fn check(&mut self) -> Result<()> {
        for (name, c, log) in &mut self.children {
            if let Ok(Some(status)) = c.try_wait() {
                let text = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("{name} exited ({status}): {}", tail.join("\n"));
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr, what: &str) -> Result<()> {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{what} is not listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// nginx's settings, with `@DIR@`, `@LISTEN@`, `@ROOT@` and `@SERVER@`
/// to fill in (the tests' nginx uses the same file).
const NGINX_CONF: &str = include_str!("nginx.conf");

/// The origin's nginx: serves `<dir>/www` on `ip:80` and logs each
/// request's body bytes.
pub fn nginx(procs: &mut Procs, ns: &str, ip: Ipv4Addr, dir: &Path) -> Result<PathBuf> {
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    let conf = NGINX_CONF
        .replace("@DIR@", &d.to_string())
        .replace("@LISTEN@", &format!("{ip}:80"))
        .replace("@ROOT@", &www.display().to_string())
        .replace("@SERVER@", "");
    fs::write(dir.join("nginx.conf"), conf)?;
    let args = vec![
        "-p".into(),
        d.to_string(),
        "-c".into(),
        format!("{d}/nginx.conf"),
        "-g".into(),
        "daemon off;".into(),
    ];
    procs.spawn(
        "nginx",
        ns,
        Path::new("nginx"),
        &args,
        &dir.join("nginx.out"),
    )?;
    wait_listening(SocketAddr::from((ip, 80)), "nginx")?;
    Ok(www)
}

/// One GET for an object in nginx's access log.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginGet {
    /// The range's first byte (0 without a range).
    pub start: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// The client's address.
    pub client: String,
}

/// Every GET for `uri` in nginx's access log, in order.
pub fn nginx_gets(dir: &Path, uri: &str) -> Vec<OriginGet> {
    let log = fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    log.lines().filter_map(|l| parse_get(l, uri)).collect()
}

/// A line of the `ranges` log format (`nginx.conf`): method, URI, the
/// quoted Range header, status, client, body bytes.
fn parse_get(line: &str, uri: &str) -> Option<OriginGet> {
    let rest = line.strip_prefix("GET ")?.strip_prefix(uri)?;
    let (range, rest) = rest.strip_prefix(" \"")?.split_once("\" ")?;
    let mut fields = rest.split(' ').skip(1);
    let (client, bytes) = (fields.next()?, fields.next()?.parse().ok()?);
    let start = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, _)| a.parse().ok())
        .unwrap_or(0);
    Some(OriginGet {
        start,
        bytes,
        client: client.to_owned(),
    })
}

/// Body bytes nginx served by GET for `uri`, from its access log.
pub fn nginx_bytes(dir: &Path, uri: &str) -> u64 {
    let log = fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.starts_with("GET ") && l.split(' ').nth(1) == Some(uri))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// docker-registry on `ip:5000`, storing in `dir`; a pull-through cache of
/// `upstream` when given. Its access log (combined format) goes to
/// `<dir>/access.log`.
pub fn registry(
    procs: &mut Procs,
    name: &str,
    ns: &str,
    ip: Ipv4Addr,
    dir: &Path,
    upstream: Option<&str>,
) -> Result<()> {
    fs::create_dir_all(dir)?;
    let proxy = upstream.map_or(String::new(), |u| format!("proxy:\n  remoteurl: {u}\n"));
    let conf = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: \"{}\"\nhttp:\n  addr: {ip}:5000\n  secret: shoal-bench\n{proxy}",
        dir.join("data").display()
    );
    fs::write(dir.join("config.yml"), conf)?;
    let args = vec!["serve".into(), dir.join("config.yml").display().to_string()];
    procs.spawn(
        name,
        ns,
        Path::new("docker-registry"),
        &args,
        &dir.join("access.log"),
    )?;
    wait_listening(SocketAddr::from((ip, 5000)), name)
}

/// Body bytes a registry served for GETs of blob `digest`, from its
/// access log.
pub fn registry_blob_bytes(dir: &Path, digest: &str) -> u64 {
    let log = fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    let suffix = format!("/blobs/{digest}");
    log.lines()
        .filter_map(|l| {
            let req = l.split('"').nth(1)?;
            let mut r = req.split(' ');
            let (method, target) = (r.next()?, r.next()?);
            let mut after = l.split('"').nth(2)?.split_whitespace();
            let status: u16 = after.next()?.parse().ok()?;
            let bytes: u64 = after.next()?.parse().ok()?;
            (method == "GET" && target.ends_with(&suffix) && status < 300).then_some(bytes)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_and_clients_of_one_object() {
        let get = |l| parse_get(l, "/object-1.bin");
        assert_eq!(
            get("GET /object-1.bin \"bytes=16777216-33554431\" 206 10.88.1.15 16777216"),
            Some(OriginGet {
                start: 16 << 20,
                bytes: 16 << 20,
                client: "10.88.1.15".into()
            })
        );
        let whole = get("GET /object-1.bin \"-\" 200 10.88.1.2 5");
        assert_eq!(whole.map(|g| g.start), Some(0));
        assert_eq!(get("HEAD /object-1.bin \"-\" 200 10.88.1.2 0"), None);
        assert_eq!(get("GET /object-2.bin \"-\" 200 10.88.1.2 5"), None);
        assert_eq!(get("GET /object-1.bin \"-\" 200 10.88.1.2"), None);
    }

    #[test]
    fn logs_are_read_for_bytes() {
        let dir = std::env::temp_dir().join(format!("shoal-bench-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("access.log"),
            "GET /a.bin \"bytes=0-9\" 206 10\nGET /a.bin \"-\" 200 5\nHEAD /a.bin \"-\" 200 0\nGET /b \"-\" 200 7\n",
        )
        .unwrap();
        assert_eq!(nginx_bytes(&dir, "/a.bin"), 15);
        fs::write(
            dir.join("access.log"),
            "10.0.0.1 - - [x] \"GET /v2/r/blobs/sha256:ab HTTP/1.1\" 200 100 \"\" \"ua\"\n\
             10.0.0.1 - - [x] \"GET /v2/r/blobs/sha256:ab HTTP/1.1\" 307 0 \"\" \"ua\"\n\
             10.0.0.1 - - [x] \"HEAD /v2/r/blobs/sha256:ab HTTP/1.1\" 200 0 \"\" \"ua\"\n",
        )
        .unwrap();
        assert_eq!(registry_blob_bytes(&dir, "sha256:ab"), 100);
        fs::remove_dir_all(&dir).unwrap();
    }
}
