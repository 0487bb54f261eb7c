//! Real processes for end-to-end tests: nginx as the origin, `shoal agent`
//! processes on loopback, `shoal get` as a client. Everything is killed and
//! removed when its handle drops.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod containerd;
mod gossip;
pub mod netns;
pub mod raw;
pub mod registry;
mod stripes;
pub mod tokens;
#[allow(unused_imports)]
pub use gossip::*;
#[allow(unused_imports)]
pub use stripes::*;

/// 127.0.0.1.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub const TOKEN: &str = "test-cluster-token";

/// A free loopback port for a server to listen on. Taken from below the
/// kernel's ephemeral range (32768 and up on Linux), so that no outgoing
/// connection can grab it between this check and the server's bind; each
/// process walks its own stretch, and ports are never handed out twice.
/// Whether this process is root and has `tools` (each run with its
/// version flag). Tests that need them skip when not, unless
/// `SHOAL_REQUIRE_PRIVILEGED` is set (as `scripts/test` does when it runs
/// as root), in which case they fail instead.
pub fn privileged(tools: &[(&str, &str)]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(t, flag)| {
            !Command::new(t)
                .arg(flag)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(t, _)| *t)
        .collect();
    if root && missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("SHOAL_REQUIRE_PRIVILEGED").is_none(),
        "SHOAL_REQUIRE_PRIVILEGED is set but this test cannot run (root: {root}, missing: {missing:?})"
    );
    skipped(&format!(
        "needs root and {missing:?} (scripts/test provides them)"
    ));
    false
}

/// Records that the running test skips itself, and why: on stderr, and
/// in `target/tmp/skipped-tests.txt`, which `scripts/test` lists at the
/// end so that a skip is never mistaken for a pass.
pub fn skipped(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipped: {why}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{test}: {why}");
    }
}

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// Waits until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str) {
    if let Err(e) = try_wait_listening(addr) {
        panic!("{what} {e}");
    }
}

/// Waits (at most 20 s) until something accepts connections on `addr`.
pub fn try_wait_listening(addr: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("never listened on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `GET target` on `addr` with `Connection: close`: the status code and
/// the body, or `None` if no response came within 10 s.
pub fn http_get(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    http_exchange(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends a whole raw `request` (which should ask to close the
/// connection) and returns the status and the body as text.
pub fn http_exchange(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Random bytes from a seeded generator.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// nginx serving files from a folder, logging every request's range and
/// body bytes.
pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub ip: IpAddr,
    pub port: u16,
    child: Child,
}

impl Nginx {
    /// nginx on loopback at full speed.
    pub fn start() -> Nginx {
        Nginx::start_with(LOOPBACK, "")
    }

    /// nginx listening on `ip`, with `server` directives added to its one
    /// server block (for example `limit_rate 4m;`).
    pub fn start_with(ip: IpAddr, server: &str) -> Nginx {
        Nginx::start_on(ip, "", server)
    }

    /// nginx on loopback speaking HTTPS with the PEM `cert` and `key`.
    pub fn start_tls(cert: &Path, key: &Path) -> Nginx {
        let server = format!(
            "ssl_certificate {};\n        ssl_certificate_key {};",
            cert.display(),
            key.display()
        );
        Nginx::start_on(LOOPBACK, " ssl", &server)
    }

    /// nginx on loopback speaking HTTPS, with `server` directives that
    /// name its certificate and key and anything else.
    pub fn start_tls_server(server: &str) -> Nginx {
        Nginx::start_on(LOOPBACK, " ssl", server)
    }

    fn start_on(ip: IpAddr, listen: &str, server: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let root = dir.path().join("www");
        fs::create_dir_all(&root).unwrap();
        let conf = include_str!("../../src/bench/nginx.conf")
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@LISTEN@", &format!("{ip}:{port}{listen}"))
            .replace("@ROOT@", &root.display().to_string())
            .replace("@SERVER@", server);
        fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/test installs it)");
        wait_listening(SocketAddr::new(ip, port), "nginx");
        Nginx {
            dir,
            ip,
            port,
            child,
        }
    }

    /// Publishes `bytes` as `/name` and returns its URL.
    pub fn put(&self, name: &str, bytes: &[u8]) -> String {
        fs::File::create(self.dir.path().join("www").join(name))
            .unwrap()
            .write_all(bytes)
            .unwrap();
        format!("http://{}/{name}", SocketAddr::new(self.ip, self.port))
    }

    /// `(method, uri, range, status, body bytes)` of every request so far.
    pub fn log(&self) -> Vec<(String, String, String, u16, u64)> {
        let text = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (method, rest) = l.split_once(' ')?;
                let (uri, rest) = rest.split_once(' ')?;
                let (range, rest) = rest.strip_prefix('"')?.split_once("\" ")?;
                // `status client bytes` (the bench's format names the
                // client, for its origin accounting).
                let (status, rest) = rest.split_once(' ')?;
                let bytes = rest.rsplit(' ').next()?;
                Some((
                    method.into(),
                    uri.into(),
                    range.into(),
                    status.parse().ok()?,
                    bytes.parse().ok()?,
                ))
            })
            .collect()
    }

    /// Body bytes served for `uri` by GET requests.
    pub fn bytes_served(&self, uri: &str) -> u64 {
        self.log()
            .iter()
            .filter(|r| r.0 == "GET" && r.1 == uri)
            .map(|r| r.4)
            .sum()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `shoal agent` process, on loopback or in a network namespace.
pub struct Agent {
    pub name: String,
    /// The address it listens on.
    pub ip: IpAddr,
    /// The network namespace it runs in, if not the test's own.
    pub netns: Option<String>,
    pub port: u16,
    pub api: u16,
    pub data: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
}

fn shoal() -> &'static str {
    env!("CARGO_BIN_EXE_shoal")
}

impl Agent {
    /// Starts `shoal get url` through this agent, writing beside its data
    /// directory: the process and the output file (its stderr is the
    /// same path with `.err`).
    pub fn spawn_get(&self, url: &str, digest: Option<&str>) -> (Child, PathBuf) {
        let out = self
            .data
            .with_file_name(format!("get-{}-{}.out", self.name, free_port()));
        let err = fs::File::create(out.with_extension("err")).unwrap();
        let mut cmd = Command::new(shoal());
        cmd.args(["get", url, "--agent", &self.api_url(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(err);
        if let Some(d) = digest {
            cmd.args(["--digest", d]);
        }
        (cmd.spawn().unwrap(), out)
    }

    /// Where this agent's OCI mirror port listens (from its arguments).
    pub fn mirror_addr(&self) -> SocketAddr {
        let i = self
            .args
            .iter()
            .position(|x| x == "--mirror-listen")
            .unwrap();
        self.args[i + 1].parse().unwrap()
    }

    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.api)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr())
    }

    /// The agent's `/v1/status`, or `None` if it does not answer.
    pub fn status(&self) -> Option<shoal_agent::status::Status> {
        let (code, body) = http_get(self.api_addr(), shoal_agent::status::STATUS_PATH)?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The sum of every sample of the Prometheus metric `name` (all
    /// label sets), 0 if it has none.
    pub fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.api_addr(), "/metrics").map_or(String::new(), |r| r.1);
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    /// The agent's process id. Panics when it is not running: pid 0
    /// would make `kill` signal the test's whole process group.
    pub fn pid(&self) -> Pid {
        match &self.child {
            Some(c) => Pid::from_raw(c.id() as i32),
            None => panic!("{} is not running: no process to signal", self.name),
        }
    }

    /// (Re)starts the process with its arguments and waits for it.
    pub fn start(&mut self) {
        let log = fs::File::create(self.data.with_extension("log")).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` enters the namespace and execs: the child
                // is the agent itself, so signals reach it.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, shoal()]);
                c
            }
            None => Command::new(shoal()),
        };
        let child = cmd
            .arg("agent")
            .args(&self.args)
            .env("SHOAL_LOG", "info,shoal_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for addr in [self.api_addr(), self.peer_addr()] {
            if let Err(e) = try_wait_listening(addr) {
                panic!("{} {e}; its log:\n{}", self.name, self.log());
            }
        }
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let _ = c.wait();
        }
    }

    /// Waits at most `limit` for the process to exit by itself; its exit
    /// status, or `None` if it is still running (or was never started).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            let status = self.child.as_mut()?.try_wait().ok()?;
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// Bytes of stripe files in the store.
    pub fn store_bytes(&self) -> u64 {
        dir_bytes(&self.data.join("data"))
    }

    /// Every stripe file: (path, the checksum its name claims).
    pub fn stripes(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(self.data.join("data")) else {
            return out;
        };
        for shard in shards.flatten() {
            for f in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if let Some((_, sum)) = name.split_once('.') {
                    out.push((f.path(), sum.to_owned()));
                }
            }
        }
        out
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            // A stopped process cannot die until continued.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill();
    }
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// Runs `cmd`, a tool `scripts/test` installs, and returns its stdout;
/// panics with its stderr if it cannot run or fails.
pub fn run_tool(mut cmd: Command) -> Vec<u8> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{name} (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{name} {:?} failed: {}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `openssl <args>` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    run_tool(cmd);
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`srv.pem`, `srv.key`).
pub fn private_ca(dir: &Path) {
    mint_ca(dir, "ca");
    mint_leaf(dir, "ca", "srv", "127.0.0.1", "IP:127.0.0.1", "serverAuth");
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A self-signed CA in `dir`: `<name>.pem` and `<name>.key`.
pub fn mint_ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN=shoal test {name}"),
    );
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", &subj];
    ca.extend(EC);
    ca.extend(["-keyout", &key, "-out", &pem]);
    openssl(dir, &ca);
}

/// A certificate with common name `cn`, subject alternative names `san`
/// (`IP:…`, `DNS:…`) and extended key usage `usage`, signed by the CA
/// `ca` (see [`mint_ca`]): `<name>.pem` and `<name>.key` in `dir`.
pub fn mint_leaf(dir: &Path, ca: &str, name: &str, cn: &str, san: &str, usage: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subj = format!("/CN={cn}");
    let mut req = vec!["req", "-subj", &subj];
    req.extend(EC);
    req.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &req);
    let ext = format!("{name}.cnf");
    fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

/// Fails if any process's command line mentions `mark` (a path only the
/// processes of one run use).
pub fn assert_no_process_mentions(mark: &str) {
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains(mark),
            "a process outlived its run: {cmdline}"
        );
    }
}

/// Arguments every test agent gets: name, addresses, data dir, token,
/// labels (two racks in one row).
pub fn base_args(
    i: usize,
    ip: IpAddr,
    port: u16,
    api: u16,
    dir: &tempfile::TempDir,
) -> Vec<String> {
    let data = dir.path().join(format!("n{i}"));
    vec![
        "--name".into(),
        format!("n{i}"),
        "--listen".into(),
        SocketAddr::new(ip, port).to_string(),
        "--api-listen".into(),
        SocketAddr::new(ip, api).to_string(),
        // Each agent's own OCI mirror port, so agents never collide there.
        "--mirror-listen".into(),
        SocketAddr::new(ip, free_port()).to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--token".into(),
        TOKEN.into(),
        "--labels".into(),
        format!("row-0,rack-{}", i % 2),
        // Test origins (nginx, an embedded server) listen on loopback.
        "--allow-origin".into(),
        "127.0.0.1".into(),
    ]
}

impl Agent {
    /// Agent `n{i}` on loopback (not started).
    pub fn new(i: usize, port: u16, api: u16, dir: &tempfile::TempDir, args: Vec<String>) -> Agent {
        Agent {
            name: format!("n{i}"),
            ip: LOOPBACK,
            netns: None,
            port,
            api,
            data: dir.path().join(format!("n{i}")),
            args,
            child: None,
        }
    }
}

/// A cluster of agents on loopback that know each other statically, or
/// find each other by gossip.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub agents: Vec<Agent>,
}

impl Cluster {
    /// `n` agents that all reach each other directly.
    pub fn new(n: usize, extra: &[&str]) -> Cluster {
        Cluster::with_addrs(n, extra, |_, _, a| a)
    }

    /// `n` agents where agent `i` reaches agent `j` at
    /// `addr_of(i, j, real address)`: a test can put a proxy in front of
    /// an agent, or cut one link.
    pub fn with_addrs(
        n: usize,
        extra: &[&str],
        addr_of: impl Fn(usize, usize, SocketAddr) -> SocketAddr,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut agents = Vec::new();
        for (i, &(port, api)) in ports.iter().enumerate() {
            let mut args = base_args(i, LOOPBACK, port, api, &dir);
            for (j, &(p, _)) in ports.iter().enumerate() {
                if j != i {
                    let addr = addr_of(i, j, SocketAddr::from(([127, 0, 0, 1], p)));
                    args.push("--peer".into());
                    args.push(format!("n{j}={addr}/row-0/rack-{}", j % 2));
                }
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            agents.push(Agent::new(i, port, api, &dir, args));
        }
        for a in &mut agents {
            a.start();
        }
        Cluster { dir, agents }
    }

    /// `n` agents that find each other by gossip, all seeded with n0.
    pub fn gossiping(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let seed = format!("127.0.0.1:{}", ports[0].0);
        let mut agents = Vec::new();
        for (i, &(port, api)) in ports.iter().enumerate() {
            let mut args = base_args(i, LOOPBACK, port, api, &dir);
            args.extend(["--seed".into(), seed.clone()]);
            args.extend(extra.iter().map(|s| s.to_string()));
            agents.push(Agent::new(i, port, api, &dir, args));
        }
        for a in &mut agents {
            a.start();
        }
        Cluster { dir, agents }
    }

    /// Which agents hold the stripe whose store key is `key_hex`.
    pub fn holders(&self, key_hex: &str) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&i| {
                self.agents[i].stripes().iter().any(|(p, _)| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(key_hex))
                })
            })
            .collect()
    }

    /// The warnings and errors every agent logged, for failure messages.
    pub fn problems(&self) -> String {
        let mut out = String::new();
        for a in &self.agents {
            for line in a.log().lines() {
                if line.contains("WARN") || line.contains("ERROR") {
                    out.push_str(&format!("[{}] {line}\n", a.name));
                }
            }
        }
        out
    }

    /// Starts `shoal get` of `url` through agent `i` into a file.
    pub fn spawn_get(&self, i: usize, url: &str, digest: Option<&str>) -> (Child, PathBuf) {
        self.agents[i].spawn_get(url, digest)
    }
}

/// How long any one `shoal get` in a test may take before the test calls
/// it hung: generous for a debug build on two busy cores, and far below
/// CI's limit, so a hang fails one test instead of the whole run.
pub const GET_LIMIT: Duration = Duration::from_secs(240);

/// Waits (at most [`GET_LIMIT`]) for a `shoal get` started by
/// [`Cluster::spawn_get`] writing to `out`, and returns (success, stderr).
/// A get that hangs is killed and reported as failed.
pub fn finish(mut child: Child, out: &Path) -> (bool, String) {
    let start = Instant::now();
    let ok = loop {
        match child.try_wait().unwrap() {
            Some(status) => break status.success(),
            None if start.elapsed() > GET_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                let err = fs::read_to_string(out.with_extension("err")).unwrap_or_default();
                return (
                    false,
                    format!("shoal get hung for {GET_LIMIT:?}; killed\n{err}"),
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let err = fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    (ok, err)
}

/// SHA-256 of a file's contents.
pub fn file_sha256(path: &Path) -> String {
    sha256(&fs::read(path).unwrap_or_default())
}
