//! One agent at a time: its store across restarts, how it answers bad
//! input on every endpoint, and its settings' layers. (A store smaller
//! than the object is checked in-process, `crates/agent/tests`.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());
const MIB: usize = 1 << 20;

#[test]
fn a_restarted_agent_reuses_its_store() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let data = random_bytes(40 * MIB, 3);
    let digest = sha256(&data);
    let url = nginx.put("layer.tar", &data);
    let mut cluster = Cluster::new(1, &["--stripe-size", "8MiB", "--store-budget", "1GiB"]);
    let (child, out) = cluster.spawn_get(0, &url, Some(&digest));
    assert!(finish(child, &out).0);
    assert_eq!(file_sha256(&out), digest);
    let served = nginx.bytes_served("/layer.tar");
    assert_eq!(served, data.len() as u64);

    cluster.agents[0].stop();
    cluster.agents[0].start();
    let (child, out) = cluster.spawn_get(0, &url, Some(&digest));
    let (ok, err) = finish(child, &out);
    assert!(ok, "{err}");
    assert_eq!(file_sha256(&out), digest);
    assert_eq!(
        nginx.bytes_served("/layer.tar"),
        served,
        "the second get went to the origin"
    );
}

/// Sends a raw request and returns the status code (0 if the connection
/// closed without one).
fn status(port: u16, request: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request.as_bytes());
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get(port: u16, target: &str, headers: &str) -> u16 {
    status(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"),
    )
}

#[test]
fn bad_input_gets_a_clear_4xx_and_does_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nginx = Nginx::start();
    let url = nginx.put("obj", &random_bytes(MIB, 9));
    let cluster = Cluster::new(1, &["--stripe-size", "256KiB", "--store-budget", "64MiB"]);
    let a = &cluster.agents[0];
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    let ok_query = format!("url={}&size=1048576&ss=262144&i=0", enc(&url));

    // Without the token: 401, and the origin never hears of it.
    assert_eq!(get(a.port, &format!("/peer/v1/stripe?{ok_query}"), ""), 401);
    assert_eq!(
        get(
            a.port,
            &format!("/peer/v1/stripe?{ok_query}"),
            "Authorization: Bearer wrong\r\n"
        ),
        401
    );
    assert_eq!(
        get(a.port, &format!("/peer/v1/replicate?{ok_query}"), ""),
        401
    );
    assert!(
        nginx.log().is_empty(),
        "an unauthenticated request reached the origin"
    );

    for bad in [
        String::new(),
        "url=file%3A%2F%2F%2Fetc%2Fpasswd&size=10&ss=262144&i=0".into(),
        format!(
            "url={}&size=10&ss=262144&i=0&d=sha256%3A..%2F..%2Fetc",
            enc(&url)
        ),
        format!("url={}&size=10&ss=1&i=0", enc(&url)),
        format!("url={}&size=1048576&ss=262144&i=99", enc(&url)),
        format!("url={}&size=10&ss=262144&i=0&from=11", enc(&url)),
        format!("url={}&size=10&ss=262144&i=0&path=..%2F..", enc(&url)),
        format!("url={}&size=-5&ss=262144&i=0", enc(&url)),
        format!(
            "url={}&size=99999999999999999999999&ss=262144&i=0",
            enc(&url)
        ),
    ] {
        assert_eq!(
            get(a.port, &format!("/peer/v1/stripe?{bad}"), &auth),
            400,
            "{bad}"
        );
    }
    assert_eq!(get(a.port, "/peer/v1/../../etc/passwd", &auth), 404);
    assert_eq!(get(a.port, "/peer/v1/stripe/%2e%2e/secret", &auth), 404);
    // A peek for something not cached.
    assert_eq!(
        get(
            a.port,
            &format!("/peer/v1/stripe?{ok_query}&cached=true"),
            &auth
        ),
        404
    );

    let obj = |q: &str| format!("/v1/object?{q}");
    assert_eq!(get(a.api, &obj("url=ftp%3A%2F%2Fx%2Fy"), ""), 400);
    assert_eq!(get(a.api, &obj(""), ""), 400);
    assert_eq!(
        get(
            a.api,
            &obj(&format!("url={}&digest=md5%3Aabc", enc(&url))),
            ""
        ),
        400
    );
    assert_eq!(
        get(
            a.api,
            &obj(&format!("url={}", enc(&url))),
            "Range: bytes=99999999999-\r\n"
        ),
        416
    );
    assert_eq!(
        get(
            a.api,
            &obj(&format!("url={}", enc(&url))),
            "Range: bytes=5-2\r\n"
        ),
        416
    );
    assert_eq!(
        get(
            a.api,
            &obj(&format!("url={}", enc(&url))),
            "Range: lines=1-2\r\n"
        ),
        416
    );
    let missing = url.replace("/obj", "/missing");
    assert_eq!(get(a.api, &obj(&format!("url={}", enc(&missing))), ""), 502);
    // A valid range works.
    assert_eq!(
        get(
            a.api,
            &obj(&format!("url={}", enc(&url))),
            "Range: bytes=0-99\r\n"
        ),
        206
    );

    // Huge headers are refused, not buffered without bound.
    let huge = format!("X-Junk: {}\r\n", "a".repeat(1 << 20));
    let code = get(a.api, "/healthz", &huge);
    assert!(
        code == 431 || code == 400 || code == 0,
        "huge header got {code}"
    );

    // Still alive and well.
    assert_eq!(get(a.api, "/healthz", ""), 200);
    assert_eq!(get(a.port, "/readyz", ""), 200);
    assert!(
        !a.log().contains("panicked"),
        "the agent panicked:\n{}",
        a.log()
    );
}

/// The harness never signals a process that is not there: pid 0 would
/// reach the test runner's whole process group.
#[test]
#[should_panic(expected = "is not running")]
fn signalling_an_agent_that_is_not_running_is_a_test_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::new(0, free_port(), free_port(), &dir, Vec::new());
    a.signal(nix::sys::signal::Signal::SIGCONT);
}

/// Settings come in layers (defaults, file, `SHOAL_*`, flags) and a later
/// one wins key by key; two sources of the cluster token are refused
/// wherever each was set, instead of the file's quietly winning over a
/// flag.
#[test]
fn settings_layers_follow_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("shoal.toml");
    std::fs::write(
        &cfg,
        format!(
            "token = \"from-the-file\"\nlisten = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:{file_port}\"\n\
             [mirror]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "from-a-file\n").unwrap();
    let agent = |env_api: bool, extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.arg("agent")
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env_remove("SHOAL_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if env_api {
            cmd.env("SHOAL_API_LISTEN", format!("127.0.0.1:{env_port}"));
        }
        cmd.spawn().unwrap()
    };

    // A token in the file and a token file on the command line: an error
    // naming both, before anything listens.
    let out = agent(false, &["--token-file", token.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("both token and token_file"), "{err}");

    // The environment beats the file, a flag beats the environment.
    for (flag, port) in [(false, env_port), (true, flag_port)] {
        let api = format!("127.0.0.1:{flag_port}");
        let extra: &[&str] = if flag { &["--api-listen", &api] } else { &[] };
        let mut child = agent(true, extra);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = try_wait_listening(addr);
        let _ = child.kill();
        let _ = child.wait();
        assert!(up.is_ok(), "the API listens on {addr}");
    }
}

/// Slow clients cannot hold a port: with at most 64 connections and 2 s
/// for a request's headers, 200 connections that each send half a
/// request header get either a 503 at once (the 136 past the limit) or
/// closed once their 2 s are up (the 64 held), and a whole request is
/// served again as soon as they are gone.
#[test]
fn slow_clients_are_capped_and_timed_out() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "max_connections = 64\nheader_read_timeout_ms = 2000\n",
    )
    .unwrap();
    let cluster = Cluster::new(1, &["--config", config.to_str().unwrap()]);
    let mirror = cluster.agents[0].mirror_addr();
    let started = std::time::Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(mirror).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: shoal\r\n")
                .unwrap();
            s
        })
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "opening the connections took longer than the header timeout"
    );
    let (mut refused, mut closed) = (0, 0);
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut answer = Vec::new();
        // Ends at the server's close: a read that times out fails the test.
        match s.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a slow client was held open: {e}"),
        }
        if answer.starts_with(b"HTTP/1.1 503") {
            assert!(String::from_utf8_lossy(&answer).contains("too many connections"));
            refused += 1;
        } else {
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
            closed += 1;
        }
    }
    assert_eq!((refused, closed), (136, 64));
    drop(slow);
    assert_eq!(get(mirror.port(), "/v2/", ""), 200, "served again");
}

/// A generic fetch reads only what `origins.allow` lists. The agent's own
/// API, a path outside the listed prefix, a redirect to loopback (by
/// address or by a name that resolves there) or to a cloud metadata
/// address, and a peer (holding the cluster token) asking the owner to
/// fetch the agent's own API are all refused before any byte, and the
/// refusals are counted. With no patterns, generic fetches are off.
#[test]
fn origins_are_allow_listed_for_clients_and_peers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (port, api) = (free_port(), free_port());
    // A forbidden target with a listener of its own: its log must stay
    // empty.
    let target = Nginx::start();
    let t = target.port;
    let nginx = Nginx::start_with(
        LOOPBACK,
        &format!(
            "location = /public/to-api {{ return 302 http://127.0.0.1:{api}/v1/status; }}\n\
             location = /public/to-localhost {{ return 302 http://localhost:{api}/v1/status; }}\n\
             location = /public/to-target {{ return 302 http://127.0.0.1:{t}/secret; }}\n\
             location = /public/to-target-by-name {{ return 302 http://localhost:{t}/secret; }}\n\
             location = /public/to-metadata {{ return 302 http://169.254.169.254/latest/meta-data/; }}"
        ),
    );
    let bytes = random_bytes(MIB, 21);
    fs_put(&nginx, "public", "obj", &bytes);
    fs_put(&nginx, "secret", "obj", &bytes);
    let public = format!("http://127.0.0.1:{}/public/", nginx.port);
    let mut args: Vec<String> = base_args(0, LOOPBACK, port, api, &dir)
        .into_iter()
        .collect();
    let i = args.iter().position(|a| a == "--allow-origin").unwrap();
    args.drain(i..i + 2);
    let strict = args.clone();
    args.extend(["--allow-origin".into(), public.clone()]);
    args.extend(["--stripe-size", "256KiB", "--store-budget", "64MiB"].map(String::from));
    let mut a = Agent::new(0, port, api, &dir, args);
    a.start();
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
    let api_addr = a.api_addr();
    let object = |url: &str| http_get(api_addr, &format!("/v1/object?url={}", enc(url)));

    let (code, _) = object(&format!("{public}obj")).unwrap();
    assert_eq!(code, 200, "a listed URL is served");
    assert_eq!(a.metric("shoal_origin_bytes_total"), MIB as f64);

    let own_api = format!("http://127.0.0.1:{api}/v1/status");
    let refused = [
        (
            format!("http://127.0.0.1:{}/secret/obj", nginx.port),
            "matches no origins.allow pattern",
        ),
        (
            format!("http://127.0.0.1:{}/public/../secret/obj", nginx.port),
            "matches no",
        ),
        (own_api.clone(), "matches no"),
        (format!("{public}to-api"), "is a loopback address"),
        (format!("{public}to-localhost"), "resolves to"),
        (format!("{public}to-target"), "is a loopback address"),
        (format!("{public}to-target-by-name"), "resolves to"),
        (format!("http://127.0.0.1:{t}/secret"), "matches no"),
        (format!("{public}to-metadata"), "link-local"),
    ];
    for (url, why) in &refused {
        let (code, body) = object(url).unwrap();
        assert_eq!(code, 403, "{url}: {body}");
        assert!(body.contains(why), "{url}: {body}");
        assert!(
            !body.contains("\"members\""),
            "{url} leaked the status: {body}"
        );
    }
    assert!(
        target.log().is_empty(),
        "a request reached the forbidden target: {:?}",
        target.log()
    );
    let served: Vec<String> = nginx.log().into_iter().map(|r| r.1).collect();
    assert!(
        served.iter().all(|u| u.starts_with("/public/")),
        "only the listed prefix reached the origin: {served:?}"
    );

    // A peer with the token asks this node, the owner of every stripe,
    // to fetch its own API: refused like a client's request.
    let peer_req = format!(
        "GET /peer/v1/stripe?url={}&size=100&ss=262144&i=0 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
        enc(&own_api)
    );
    let (_, body) = http_exchange(a.peer_addr(), &peer_req).unwrap();
    assert!(
        !body.contains("\"members\""),
        "the status leaked to a peer: {body}"
    );
    assert!(body.contains("matches no origins.allow pattern"), "{body}");
    assert_eq!(
        a.metric("shoal_origin_refused_total"),
        refused.len() as f64 + 1.0,
        "every refusal is counted once"
    );

    // No patterns: generic fetches are off.
    a.stop();
    a.args = strict;
    a.start();
    let (code, body) = object(&format!("{public}obj")).unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("generic fetches are off"), "{body}");
}

/// Publishes `bytes` as `/dir/name` on `nginx`.
fn fs_put(nginx: &Nginx, dir: &str, name: &str, bytes: &[u8]) {
    let at = nginx.dir.path().join("www").join(dir);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join(name), bytes).unwrap();
}
