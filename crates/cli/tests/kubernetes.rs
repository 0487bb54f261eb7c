//! shoal on Kubernetes, without a control plane (none can be installed
//! here: no API server, kubelet, kind or k3s in the package registries).
//!
//! - Topology labels from the Node object: agents ask a stand-in API
//!   server, nginx over TLS with a private CA, that serves Node objects at
//!   `/api/v1/nodes/NAME` only to the right service-account token. The
//!   agent's code is the code that talks to a real API server; the
//!   stand-in is not a Kubernetes API server (no RBAC, no watch, no
//!   `Status` objects beyond the ones written here).
//! - kubelet's path for real: three containerd daemons with their CRI
//!   plugin stand in for three nodes. `deploy/test/kubelet_lite.py` takes
//!   the DaemonSet's pod spec from `helm template` and starts it through
//!   CRI `RunPodSandbox`/`CreateContainer`/`StartContainer` from the image
//!   `scripts/build-image` built; images are then pulled with CRI
//!   `PullImage`, as kubelet pulls them. What is not tested: the API
//!   server, RBAC, the scheduler, kubelet itself (its probes, restarts,
//!   volume plugins), CNI.
//!
//! `scripts/test` installs helm and a Python with the CRI client, builds
//! the shipped image, and sets `SHOAL_HELM`, `SHOAL_KUBE_PYTHON` and
//! `SHOAL_IMAGE`; run alone, the test packs its own debug binary instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::containerd::Containerd;
use common::registry::{Auth, PASSWORD, Registry, USER, alice_for, build_image, write_layout};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SA_TOKEN: &str = "service-account-token-of-shoal";

/// A stand-in for the API server's Node endpoint: nginx over TLS (a
/// private CA) serving `/api/v1/nodes/NAME` files to requests bearing
/// [`SA_TOKEN`], 401 to others, 403 for Node `forbidden`, as a real API
/// server answers when RBAC does not allow the read, and 503 for Node
/// `late` until its file exists (an API server that is not up yet).
struct ApiServer {
    nginx: Nginx,
    /// A service account directory as kubelet mounts it: token, ca.crt,
    /// namespace.
    sa: tempfile::TempDir,
    _pki: tempfile::TempDir,
}

impl ApiServer {
    fn start() -> ApiServer {
        let pki = tempfile::tempdir().unwrap();
        private_ca(pki.path());
        let tls = format!(
            "ssl_certificate {dir}/srv.pem;\n        ssl_certificate_key {dir}/srv.key;",
            dir = pki.path().display()
        );
        let locations = format!(
            r#"{tls}
        default_type application/json;
        location = /api/v1/nodes/forbidden {{
            return 403 '{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes \"forbidden\" is forbidden: User \"system:serviceaccount:shoal:shoal\" cannot get resource \"nodes\" in API group \"\" at the cluster scope","reason":"Forbidden","code":403}}';
        }}
        location = /api/v1/nodes/late {{
            try_files $uri =503;
        }}
        location /api/v1/nodes/ {{
            if ($http_authorization != "Bearer {SA_TOKEN}") {{
                return 401 '{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}}';
            }}
        }}"#
        );
        let nginx = Nginx::start_tls_server(&locations);
        fs::create_dir_all(nginx.dir.path().join("www/api/v1/nodes")).unwrap();
        let sa = tempfile::tempdir().unwrap();
        fs::write(sa.path().join("token"), format!("{SA_TOKEN}\n")).unwrap();
        fs::copy(pki.path().join("ca.pem"), sa.path().join("ca.crt")).unwrap();
        fs::write(sa.path().join("namespace"), "shoal").unwrap();
        ApiServer {
            nginx,
            sa,
            _pki: pki,
        }
    }

    /// Publishes Node `name` with `labels` (and the fields a real Node has
    /// around them, which the agent must skip).
    fn node(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let node = serde_json::json!({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "uid": "0d6f", "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "images": [{"names": ["registry.k8s.io/pause:3.9"], "sizeBytes": 321520}]},
        });
        fs::write(
            self.nginx.dir.path().join("www/api/v1/nodes").join(name),
            node.to_string(),
        )
        .unwrap();
    }

    fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.nginx.port)
    }

    /// GETs of Node `name` so far, with their statuses.
    fn requests(&self, name: &str) -> Vec<u16> {
        let uri = format!("/api/v1/nodes/{name}");
        self.nginx
            .log()
            .into_iter()
            .filter(|r| r.0 == "GET" && r.1 == uri)
            .map(|r| r.3)
            .collect()
    }
}

/// An agent started with a settings file that turns the Node lookup on.
fn agent_asking(api: &ApiServer, dir: &tempfile::TempDir, name: &str, extra: &[&str]) -> Agent {
    let (port, api_port) = (free_port(), free_port());
    let config = dir.path().join(format!("{name}.toml"));
    let sa = api.sa.path();
    fs::write(
        &config,
        format!(
            "[kubernetes]\nnode_labels = true\n\
             label_keys = [\"topology.kubernetes.io/region\", \"topology.kubernetes.io/zone\", \"example.com/row\", \"example.com/rack\"]\n\
             api_server = \"https://{}\"\ntoken_file = \"{}/token\"\nca_file = \"{}/ca.crt\"\ntimeout_ms = 3000\n",
            api.host_port(),
            sa.display(),
            sa.display()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--name",
        name,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--api-listen",
        &format!("127.0.0.1:{api_port}"),
        "--mirror-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--data-dir",
        &dir.path().join(name).display().to_string(),
        "--token",
        TOKEN,
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut a = Agent::new(0, port, api_port, dir, args);
    a.data = dir.path().join(name);
    a.start();
    a
}

fn own_labels(a: &Agent) -> Vec<String> {
    let s = a.status().expect("status");
    let me = s.members.iter().find(|m| m.name == s.name).expect("itself");
    me.labels.clone()
}

fn readyz(a: &Agent) -> (u16, String) {
    http_get(a.api_addr(), "/readyz").expect("readyz")
}

/// Whether nginx and openssl are here (scripts/test installs them); a
/// test without them skips, or fails under `SHOAL_REQUIRE_PRIVILEGED`.
fn have_nginx_and_openssl() -> bool {
    let found = command_exists("nginx") && command_exists("openssl");
    assert!(
        found || std::env::var_os("SHOAL_REQUIRE_PRIVILEGED").is_none(),
        "nginx and openssl are needed"
    );
    if !found {
        skipped("needs nginx and openssl (scripts/test installs them)");
    }
    found
}

#[test]
fn topology_labels_come_from_the_node_object() {
    if !have_nginx_and_openssl() {
        return;
    }
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let region = "topology.kubernetes.io/region";
    let zone = "topology.kubernetes.io/zone";

    // Every key present: the labels in the configured order.
    api.node(
        "gpu-1",
        &[
            ("example.com/rack", "b07"),
            (zone, "eu-west-1a"),
            ("kubernetes.io/hostname", "gpu-1"),
            (region, "eu-west-1"),
            ("example.com/row", "r3"),
        ],
    );
    let a = agent_asking(&api, &dir, "gpu-1", &[]);
    assert_eq!(own_labels(&a), ["eu-west-1", "eu-west-1a", "r3", "b07"]);
    assert_eq!(readyz(&a), (200, "ready\n".into()));
    assert_eq!(a.metric("shoal_topology_labels"), 4.0);
    assert_eq!(api.requests("gpu-1"), [200]);

    // A Node without the site's row and rack keys: region and zone only,
    // and the agent runs without complaint.
    api.node("cpu-1", &[(region, "eu-west-1"), (zone, "eu-west-1b")]);
    let b = agent_asking(&api, &dir, "cpu-1", &[]);
    assert_eq!(own_labels(&b), ["eu-west-1", "eu-west-1b"]);
    assert_eq!(readyz(&b).0, 200);
    assert!(b.status().unwrap().problems.is_empty());

    // A rack without its row says nothing: the list stops at the gap.
    api.node(
        "odd-1",
        &[(region, "eu"), (zone, "eu-1"), ("example.com/rack", "b1")],
    );
    let c = agent_asking(&api, &dir, "odd-1", &[]);
    assert_eq!(own_labels(&c), ["eu", "eu-1"]);

    // The API refuses (RBAC): the agent starts with no labels and says so
    // in /readyz, its status and a metric.
    let d = agent_asking(&api, &dir, "forbidden", &[]);
    assert!(own_labels(&d).is_empty());
    let (code, body) = readyz(&d);
    assert_eq!(code, 200, "a failed lookup does not take the node out");
    assert!(
        body.contains("warning: topology labels") && body.contains("HTTP 403"),
        "{body}"
    );
    assert!(body.contains("is forbidden"), "the API's message: {body}");
    assert_eq!(d.status().unwrap().problems.len(), 1);
    assert_eq!(d.metric("shoal_topology_labels"), 0.0);
    assert_eq!(api.requests("forbidden"), [403], "a 403 is not retried");

    // A Node that does not exist is an error too (404), not silence.
    let e = agent_asking(&api, &dir, "absent", &[]);
    assert!(readyz(&e).1.contains("HTTP 404"));

    // Labels set explicitly win: no request is made.
    api.node("pinned", &[(region, "x"), (zone, "y")]);
    let f = agent_asking(&api, &dir, "pinned", &["--labels", "row-9,rack-9"]);
    assert_eq!(own_labels(&f), ["row-9", "rack-9"]);
    assert!(api.requests("pinned").is_empty());
}

#[test]
fn an_api_server_that_is_not_ready_yet_is_asked_again() {
    if !have_nginx_and_openssl() {
        return;
    }
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let writer = {
        let path = api.nginx.dir.path().join("www/api/v1/nodes/late");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            let node = serde_json::json!({"kind": "Node", "metadata": {"name": "late",
                "labels": {"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": "z"}}});
            fs::write(path, node.to_string()).unwrap();
        })
    };
    let a = agent_asking(&api, &dir, "late", &[]);
    writer.join().unwrap();
    assert_eq!(own_labels(&a), ["r", "z"]);
    let statuses = api.requests("late");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
}

#[test]
fn a_wrong_service_account_token_or_ca_is_refused() {
    if !have_nginx_and_openssl() {
        return;
    }
    let api = ApiServer::start();
    api.node("n", &[("topology.kubernetes.io/region", "r")]);
    let dir = tempfile::tempdir().unwrap();
    fs::write(api.sa.path().join("token"), "stolen").unwrap();
    let a = agent_asking(&api, &dir, "n", &[]);
    assert!(own_labels(&a).is_empty());
    assert!(readyz(&a).1.contains("HTTP 401"), "{}", readyz(&a).1);

    // The CA file is the only root trusted: the system's roots are not.
    fs::write(api.sa.path().join("token"), SA_TOKEN).unwrap();
    fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        api.sa.path().join("ca.crt"),
    )
    .ok();
    let b = agent_asking(&api, &dir, "n", &[]);
    let body = readyz(&b).1;
    assert!(body.contains("warning: topology labels"), "{body}");
    assert!(own_labels(&b).is_empty());
}

fn command_exists(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// helm and the CRI client, from `scripts/test`.
struct Tools {
    helm: PathBuf,
    python: PathBuf,
}

fn tools() -> Option<Tools> {
    let found = (
        std::env::var_os("SHOAL_HELM"),
        std::env::var_os("SHOAL_KUBE_PYTHON"),
    );
    if let (Some(helm), Some(python)) = found {
        return Some(Tools {
            helm: helm.into(),
            python: python.into(),
        });
    }
    assert!(
        std::env::var_os("SHOAL_REQUIRE_PRIVILEGED").is_none(),
        "SHOAL_REQUIRE_PRIVILEGED is set but SHOAL_HELM or SHOAL_KUBE_PYTHON is not"
    );
    skipped("run through scripts/test, which installs helm and the CRI client");
    None
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pause image every pod sandbox runs: a static program that sleeps
/// until it is signalled, built here (no registry to pull one from).
fn pause_image(work: &Path) -> PathBuf {
    let src = work.join("pause.c");
    fs::write(
        &src,
        "#include <signal.h>\n#include <unistd.h>\n\
         static void done(int s) { (void)s; _exit(0); }\n\
         int main(void) { signal(SIGTERM, done); signal(SIGINT, done); for (;;) pause(); }\n",
    )
    .unwrap();
    let root = work.join("pause-root");
    fs::create_dir_all(&root).unwrap();
    let mut cc = Command::new("gcc");
    cc.args(["-static", "-O2", "-o"])
        .arg(root.join("pause"))
        .arg(&src);
    run_tool(cc);
    let layout = work.join("pause-layout");
    write_layout(
        &layout,
        "test",
        &[root],
        serde_json::json!({"Entrypoint": ["/pause"]}),
    );
    oci_archive(&layout, &work.join("pause.oci.tar"), "localhost/pause:test")
}

/// Tars an OCI layout into an archive `ctr images import` names `name`.
fn oci_archive(layout: &Path, out: &Path, name: &str) -> PathBuf {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = name.into();
    fs::write(&index_path, index.to_string()).unwrap();
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(layout).arg("-cf").arg(out).arg(".");
    run_tool(tar);
    out.to_owned()
}

/// A stand-in for the cluster's DNS service: answers every A query with
/// 127.0.0.1 and every other query with no records, on port 53 of its own
/// loopback address, which kubelet-lite gives pods as their name server.
struct ClusterDns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClusterDns {
    const IP: &'static str = "127.0.53.10";

    fn start() -> ClusterDns {
        let socket = std::net::UdpSocket::bind((Self::IP, 53)).expect("port 53 on 127.0.53.10");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = dns_answer(&buf[..n]) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        ClusterDns {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one DNS query: 127.0.0.1 for type A, nothing otherwise.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(query[end]) + 1;
    }
    let question = query.get(12..end + 5)?;
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let a = qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if a {
        // A pointer to the name, type A, class IN, TTL 30, 4 bytes.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// One node: a containerd with CRI, and the shoal pod kubelet-lite runs.
struct Node {
    name: String,
    dir: PathBuf,
    containerd: Containerd,
    ports: (u16, u16, u16),
    manifests: PathBuf,
    sandbox: String,
    container: String,
}

impl Node {
    fn api(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.1))
    }

    fn status(&self) -> Option<shoal_agent::status::Status> {
        let (code, body) = http_get(self.api(), shoal_agent::status::STATUS_PATH)?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn metric(&self, name: &str, labels: &str) -> f64 {
        let body = http_get(self.api(), "/metrics").map_or(String::new(), |r| r.1);
        let prefix = format!("{name}{labels} ");
        body.lines()
            .filter_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
            .sum()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pod/logs/agent.log")).unwrap_or_default()
    }

    /// kubelet-lite's `cmd` (run or restart) for this node's pod, told
    /// about the stand-in API server and its service account.
    fn kubelet_pod(&self, t: &Tools, api: &ApiServer, cmd: &[&str]) -> serde_json::Value {
        let state = self.dir.join("pod");
        let mut args = cmd.to_vec();
        args.extend([
            "--manifests",
            self.manifests.to_str().unwrap(),
            "--node",
            &self.name,
            "--state",
            state.to_str().unwrap(),
            "--service-account",
            api.sa.path().to_str().unwrap(),
        ]);
        let api_server = api.host_port();
        args.extend(["--api-server", &api_server]);
        args.extend(["--cluster-dns", ClusterDns::IP]);
        kubelet(t, &self.containerd.socket(), &args)
    }
}

/// Runs kubelet-lite against `node`'s containerd; its JSON answer.
fn kubelet(t: &Tools, socket: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(&t.python);
    cmd.arg(repo().join("deploy/test/kubelet_lite.py"))
        .arg("--socket")
        .arg(socket)
        .args(args);
    let out = run_tool(cmd);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "kubelet-lite {args:?}: {e}: {}",
            String::from_utf8_lossy(&out)
        )
    })
}

fn spawn_kubelet(t: &Tools, socket: &Path, args: &[&str]) -> Child {
    Command::new(&t.python)
        .arg(repo().join("deploy/test/kubelet_lite.py"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_kubelet(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubelet-lite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `helm template` of the chart with the values in `values`.
fn render(t: &Tools, values: &serde_json::Value, out: &Path) {
    let values_file = out.with_extension("values.json");
    fs::write(&values_file, values.to_string()).unwrap();
    let mut helm = Command::new(&t.helm);
    helm.args(["template", "shoal"])
        .arg(repo().join("deploy/helm/shoal"))
        .args(["--namespace", "shoal", "--values"])
        .arg(&values_file);
    fs::write(out, run_tool(helm)).unwrap();
}

#[test]
fn kubelet_pulls_go_through_the_daemonset_on_three_containerd_nodes() {
    if !common::containerd::available()
        || !privileged(&[("runc", "--version"), ("gcc", "--version")])
    {
        return;
    }
    let Some(t) = tools() else { return };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // The images: shoal's as shipped (scripts/test builds it with the
    // repository's one command, static, as `localhost/shoal:test`), or
    // else that command packing the binary this test run built; and the
    // pause image.
    let shoal_image = match std::env::var_os("SHOAL_IMAGE") {
        Some(path) => PathBuf::from(path),
        None => {
            assert!(
                std::env::var_os("SHOAL_REQUIRE_PRIVILEGED").is_none(),
                "scripts/test sets SHOAL_IMAGE to the image it built"
            );
            let out = w.join("shoal.oci.tar");
            let mut build = Command::new(repo().join("scripts/build-image"));
            build
                .arg("--binary")
                .arg(env!("CARGO_BIN_EXE_shoal"))
                .arg("--out")
                .arg(&out)
                .args(["--name", "localhost/shoal:test"]);
            run_tool(build);
            out
        }
    };
    let pause = pause_image(w);
    // The cluster's DNS: every name is 127.0.0.1. The agents find each
    // other through seeds given by name, so they join only if the image
    // resolves names in its pod.
    let _dns = ClusterDns::start();

    // The registry with a test image of two layers, each several stripes.
    let registry = Registry::start();
    let layout = w.join("app");
    let image = build_image(&layout, "v1", &[3 << 20, 5 << 20], 51);
    registry.push(&layout, "team/app", "v1");
    let pushed = registry.log().len();
    let reference = format!("{}/team/app:v1", registry.host());

    let api = ApiServer::start();
    let (region, zone) = (
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    );
    let racks = ["rack-a", "rack-a", "rack-b"];
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let mut nodes = Vec::new();
    for (i, &p) in ports.iter().enumerate() {
        let name = format!("node-{i}");
        api.node(
            &name,
            &[
                (region, "lab"),
                (zone, "lab-1"),
                ("example.com/row", "row-1"),
                ("example.com/rack", racks[i]),
            ],
        );
        let dir = w.join(&name);
        let containerd = Containerd::start_cri(&dir, "localhost/pause:test");
        containerd.import(&pause);
        containerd.import(&shoal_image);
        let seeds: Vec<String> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, q)| format!("node-{j}.seeds.test:{}", q.0))
            .collect();
        let values = serde_json::json!({
            "image": {"repository": "localhost/shoal", "tag": "test", "pullPolicy": "Never"},
            "registries": [{"host": registry.host(), "url": format!("http://{}", registry.host())}],
            "ports": {"peer": p.0, "api": p.1, "mirror": p.2},
            "clusterToken": {"value": "cluster-token-for-the-test"},
            "store": {"hostPath": dir.join("var/lib/shoal"), "budget": "1GiB"},
            "stripeSize": "1MiB",
            "containerd": {"manage": true, "certsDir": dir.join("etc/containerd/certs.d"),
                           "configFile": dir.join("etc/containerd/config.toml"), "dialTimeoutMs": 500},
            "topology": {"fromNode": true, "labelKeys": [region, zone],
                         "extraLabelKeys": ["example.com/row", "example.com/rack"]},
            "seeds": seeds,
            "drainMs": 2000,
        });
        let manifests = dir.join("shoal.yaml");
        render(&t, &values, &manifests);
        nodes.push(Node {
            name,
            dir,
            containerd,
            ports: p,
            manifests,
            sandbox: String::new(),
            container: String::new(),
        });
    }

    // kubelet starts the pods.
    let mut ready_times = Vec::new();
    for n in &mut nodes {
        let out = n.kubelet_pod(&t, &api, &["run"]);
        n.sandbox = out["sandbox"].as_str().unwrap().to_owned();
        n.container = out["container"].as_str().unwrap().to_owned();
        let readyz = out["readyz"].as_str().unwrap();
        assert_eq!(
            readyz,
            "ready\n",
            "{}: containerd reads the hosts files and the Node was read; log:\n{}",
            n.name,
            n.log()
        );
        ready_times.push(out["ready_seconds"].as_f64().unwrap());
    }
    eprintln!("StartContainer to /readyz 200, seconds: {ready_times:?}");

    // The agent wrote hosts.toml for the registry into the node's certs.d.
    for n in &nodes {
        let hosts = fs::read_to_string(
            n.dir
                .join("etc/containerd/certs.d")
                .join(registry.host())
                .join("hosts.toml"),
        )
        .unwrap();
        assert!(
            hosts.contains(&format!("[host.\"http://127.0.0.1:{}\"]", n.ports.2)),
            "{hosts}"
        );
    }

    // One mesh, with each node's labels from its Node object.
    let joined = eventually(Duration::from_secs(20), || {
        nodes
            .iter()
            .all(|n| n.status().is_some_and(|s| s.alive == 3))
    });
    assert!(joined, "the agents did not join: {}", nodes[0].log());
    let s = nodes[0].status().unwrap();
    for (i, rack) in racks.iter().enumerate() {
        let m = s
            .members
            .iter()
            .find(|m| m.name == format!("node-{i}"))
            .unwrap();
        assert_eq!(m.labels, ["lab", "lab-1", "row-1", rack]);
    }

    // kubelet pulls the image on all three nodes at once.
    let pulls: Vec<Child> = nodes
        .iter()
        .map(|n| spawn_kubelet(&t, &n.containerd.socket(), &["pull", &reference]))
        .collect();
    for (n, pull) in nodes.iter().zip(pulls) {
        let out = finish_kubelet(pull);
        let digests = out["repo_digests"].to_string();
        assert!(
            digests.contains(&image.manifest),
            "{}: {digests} should name {}",
            n.name,
            image.manifest
        );
        eprintln!("{}: PullImage took {} s", n.name, out["seconds"]);
    }
    for (digest, size) in &image.blobs {
        let served = registry.blob_bytes(digest);
        eprintln!("registry sent {served} bytes of {digest} ({size} bytes)");
        assert_eq!(served, *size, "each blob's bytes leave the registry once");
    }
    let containerd_direct: Vec<_> = registry
        .clients()
        .into_iter()
        .skip(pushed)
        .filter(|(_, _, agent)| !agent.starts_with("shoal/"))
        .collect();
    assert!(
        containerd_direct.is_empty(),
        "only the agents reach the registry: {containerd_direct:?}"
    );

    // The store survives a container restart: stop the agent, start a new
    // container in the pod, and the stripes are served from its store.
    let n0 = &mut nodes[0];
    let entries = n0.status().unwrap().store.entries;
    assert!(entries >= 8, "node-0 holds the image's stripes: {entries}");
    let (sandbox, container) = (n0.sandbox.clone(), n0.container.clone());
    let out = n0.kubelet_pod(
        &t,
        &api,
        &["restart", "--sandbox", &sandbox, "--container", &container],
    );
    n0.container = out["container"].as_str().unwrap().to_owned();
    assert_eq!(n0.status().unwrap().store.entries, entries);
    let before = registry.log().len();
    kubelet(&t, &n0.containerd.socket(), &["rmi", &reference]);
    let again = kubelet(&t, &n0.containerd.socket(), &["pull", &reference]);
    assert!(again["repo_digests"].to_string().contains(&image.manifest));
    // The agent asks the registry (HEAD, no body) whether the client may
    // read each blob; the bytes come from its store.
    let blob_gets = registry.log()[before..]
        .iter()
        .filter(|r| r.0 == "GET" && r.1.contains("/blobs/"))
        .count();
    assert_eq!(
        blob_gets, 0,
        "the second pull needs no blob from the registry"
    );
    let from_store = n0.metric("shoal_served_bytes_total", "{source=\"Store\"}");
    let total: u64 = image.blobs.iter().map(|b| b.1).sum();
    assert!(
        from_store >= total as f64,
        "served from its store: {from_store} of {total}"
    );

    for n in &nodes {
        kubelet(
            &t,
            &n.containerd.socket(),
            &["stop", "--sandbox", &n.sandbox],
        );
    }
    assert!(eventually(Duration::from_secs(5), || nodes
        .iter()
        .all(|n| n.status().is_none())));

    // Uninstalled: hosts.toml still names the mirror, nothing listens
    // there, and containerd pulls from the registry itself.
    let n1 = &nodes[1];
    kubelet(&t, &n1.containerd.socket(), &["rmi", &reference]);
    let before = registry.log().len();
    let direct = kubelet(&t, &n1.containerd.socket(), &["pull", &reference]);
    assert!(direct["repo_digests"].to_string().contains(&image.manifest));
    let by_containerd = registry.clients()[before..]
        .iter()
        .filter(|(_, _, agent)| agent.starts_with("containerd/"))
        .count();
    assert!(by_containerd > 0, "{:?}", &registry.clients()[before..]);
    eprintln!("without the agents, PullImage took {} s", direct["seconds"]);
    // And --restore takes shoal's file away.
    let certs = n1.dir.join("etc/containerd/certs.d");
    let mut restore = Command::new(env!("CARGO_BIN_EXE_shoal"));
    restore
        .args(["containerd-config", "--restore", "--certs-dir"])
        .arg(&certs);
    run_tool(restore);
    assert!(!certs.join(registry.host()).join("hosts.toml").exists());
}

/// The `config.toml` of the chart's ConfigMap for `values` (a file).
fn rendered_config(t: &Tools, values: &Path) -> String {
    let mut helm = Command::new(&t.helm);
    helm.args(["template", "shoal"])
        .arg(repo().join("deploy/helm/shoal"))
        .args(["--show-only", "templates/configmap.yaml", "--values"])
        .arg(values);
    let yaml = String::from_utf8(run_tool(helm)).unwrap();
    let body = yaml
        .split_once("config.toml: |\n")
        .expect("the ConfigMap holds config.toml")
        .1;
    body.lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect()
}

#[test]
fn every_chart_setting_renders_a_config_the_agent_accepts() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    for values in [
        "deploy/test/values-all.yaml",
        "deploy/manifests/values.yaml",
    ] {
        let text = rendered_config(&t, &repo().join(values));
        let file = dir.path().join("config.toml");
        fs::write(&file, &text).unwrap();
        let cfg = shoal_agent::AgentConfig::from_file(&file)
            .unwrap_or_else(|e| panic!("{values}: {e}\n{text}"));
        let resolved = cfg
            .clone()
            .resolve()
            .unwrap_or_else(|e| panic!("{values}: {e}\n{text}"));
        assert!(cfg.kubernetes.node_labels, "{values}");
        assert!(cfg.containerd.certs_dir.is_some(), "{values}");
        if values.ends_with("values-all.yaml") {
            // Values and extraConfig both arrive.
            assert_eq!(resolved.stripe_size, 128 << 20);
            assert_eq!(cfg.min_copies, 3);
            assert_eq!(cfg.readahead, 512 << 20);
            assert_eq!(cfg.mirror.tag_ttl_ms, 60_000);
            assert_eq!(cfg.timeouts.deadline_ms, 300_000);
            assert_eq!(cfg.mirror.registries.len(), 2);
            assert_eq!(
                cfg.mirror.registries[1].url.as_deref(),
                Some("http://registry.example.com:5000")
            );
            assert_eq!(cfg.kubernetes.label_keys.len(), 4);
            assert_eq!(cfg.seeds.len(), 2, "the peers Service and the extra seed");
        }
    }
}

/// An agent managing `certs` for one registry, checking containerd's
/// config `config`.
fn agent_with_containerd(dir: &tempfile::TempDir, name: &str, config: &str) -> (Agent, PathBuf) {
    agent_over(dir, name, config, None)
}

/// The same, with `existing` as the registry's `hosts.toml` beforehand.
fn agent_over(
    dir: &tempfile::TempDir,
    name: &str,
    config: &str,
    existing: Option<&str>,
) -> (Agent, PathBuf) {
    let certs = dir.path().join(name).join("certs.d");
    let config_file = dir.path().join(name).join("config.toml");
    fs::create_dir_all(certs.join("registry.example:5000")).unwrap();
    if let Some(text) = existing {
        fs::write(certs.join("registry.example:5000/hosts.toml"), text).unwrap();
    }
    fs::write(
        &config_file,
        config.replace("@CERTS@", &certs.display().to_string()),
    )
    .unwrap();
    let settings = dir.path().join(format!("{name}.toml"));
    fs::write(
        &settings,
        format!(
            "[containerd]\ncerts_dir = \"{}\"\nconfig_file = \"{}\"\n",
            certs.display(),
            config_file.display()
        ),
    )
    .unwrap();
    let (port, api) = (free_port(), free_port());
    let mut args = base_args(0, LOOPBACK, port, api, dir);
    args.extend(
        [
            "--config",
            &settings.display().to_string(),
            "--registry",
            "registry.example:5000=http://127.0.0.1:9",
        ]
        .map(String::from),
    );
    let i = args.iter().position(|a| a == "--data-dir").unwrap();
    args[i + 1] = dir.path().join(name).join("data").display().to_string();
    let mut a = Agent::new(0, port, api, dir, args);
    a.data = dir.path().join(name).join("data");
    a.start();
    (a, certs)
}

#[test]
fn an_agent_says_when_containerd_does_not_read_its_hosts_files() {
    let dir = tempfile::tempdir().unwrap();
    // containerd 1.6 with no registry.config_path: hosts.toml is ignored.
    let (a, certs) = agent_with_containerd(
        &dir,
        "unset",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n",
    );
    let hosts = fs::read_to_string(certs.join("registry.example:5000/hosts.toml")).unwrap();
    assert!(hosts.contains("server = \"http://127.0.0.1:9\""), "{hosts}");
    let (code, body) = http_get(a.api_addr(), "/readyz").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("warning: containerd:") && body.contains("sets no registry config_path"),
        "{body}"
    );
    assert!(
        body.contains(&format!("config_path = \"{}\"", certs.display())),
        "{body}"
    );
    assert_eq!(a.metric("shoal_containerd_configured"), 0.0);
    assert!(a.log().contains("containerd will not pull through shoal"));
    assert_eq!(a.status().unwrap().problems.len(), 1);

    // Pointed at another directory: the same.
    let (b, _) = agent_with_containerd(
        &dir,
        "elsewhere",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/docker/certs.d\"\n",
    );
    assert!(
        http_get(b.api_addr(), "/readyz")
            .unwrap()
            .1
            .contains("does not include")
    );

    // Set right: no warning, and the metric says so.
    let (c, _) = agent_with_containerd(
        &dir,
        "right",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"@CERTS@\"\n",
    );
    assert_eq!(
        http_get(c.api_addr(), "/readyz").unwrap(),
        (200, "ready\n".into())
    );
    assert_eq!(c.metric("shoal_containerd_configured"), 1.0);

    // containerd 2.x reads /etc/containerd/certs.d by default, not this one.
    let (d, _) = agent_with_containerd(&dir, "v3", "version = 3\n");
    assert_eq!(d.metric("shoal_containerd_configured"), 0.0);

    // An operator's own file stays, behind the mirror, and is backed up.
    let theirs = "server = \"https://registry.example:5000\"\nca = \"/etc/certs/corp.pem\"\n\n[host.\"https://cache.corp\"]\n  capabilities = [\"pull\"]\n";
    let (e, certs) = agent_over(
        &dir,
        "kept",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"@CERTS@\"\n",
        Some(theirs),
    );
    let reg = certs.join("registry.example:5000");
    let now = fs::read_to_string(reg.join("hosts.toml")).unwrap();
    let mirror = format!("[host.\"http://{}\"]", e.mirror_addr());
    let (m, c) = (
        now.find(&mirror).unwrap(),
        now.find("[host.\"https://cache.corp\"]").unwrap(),
    );
    assert!(
        m < c && now.contains("ca = \"/etc/certs/corp.pem\""),
        "{now}"
    );
    assert!(
        now.contains("server = \"https://registry.example:5000\""),
        "{now}"
    );
    assert_eq!(
        fs::read_to_string(reg.join("hosts.toml.shoal-backup")).unwrap(),
        theirs
    );
    assert_eq!(e.metric("shoal_containerd_configured"), 1.0);
}

/// A private image pulled through containerd's CRI as kubelet pulls it
/// with a pod's pull secret (`AuthConfig` with a username and password
/// and no server address): containerd answers the agent's Basic
/// challenge with the secret and the image comes from the mesh; without
/// the secret the agent refuses, containerd falls back to the registry,
/// and the registry refuses it too.
#[test]
fn a_cri_pull_with_a_pull_secret_is_served_by_the_mirror_and_one_without_is_not() {
    let Some(t) = tools() else {
        return;
    };
    let registry = Registry::start_with(Auth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let layout = tempfile::tempdir().unwrap();
    let image = build_image(layout.path(), "v1", &[3 << 20, 100_000], 43);
    let secret = format!("{USER}:{PASSWORD}");
    registry.push_with_creds(layout.path(), "team/private", "v1", Some(&secret));
    let (_creds_dir, creds) = alice_for(&registry.host());
    let cluster = registry.mirrors(1, "1MiB", &["--registry-credentials", &creds]);
    let dir = tempfile::tempdir().unwrap();
    let containerd = Containerd::start_cri(dir.path(), "localhost/pause:test");
    let mut configure = Command::new(env!("CARGO_BIN_EXE_shoal"));
    configure
        .args([
            "containerd-config",
            "--registry",
            &registry.upstream(),
            "--mirror",
        ])
        .arg(format!("http://{}", cluster.agents[0].mirror_addr()))
        .arg("--certs-dir")
        .arg(dir.path().join("etc/containerd/certs.d"));
    run_tool(configure);
    let reference = format!("{}/team/private:v1", registry.host());
    let by_containerd = |from: usize| {
        registry.clients()[from..]
            .iter()
            .filter(|(_, _, agent)| agent.starts_with("containerd/"))
            .count()
    };

    let before = registry.clients().len();
    let socket = containerd.socket();
    let out = kubelet(&t, &socket, &["pull", "--user", &secret, &reference]);
    assert!(
        out["repo_digests"].to_string().contains(&image.manifest),
        "{out}"
    );
    assert_eq!(by_containerd(before), 0, "containerd went to the registry");
    kubelet(&t, &socket, &["rmi", &reference]);

    let before = registry.clients().len();
    let out = spawn_kubelet(&t, &socket, &["pull", &reference])
        .wait_with_output()
        .unwrap();
    assert!(
        !out.status.success(),
        "pulled a private image without its secret"
    );
    assert!(
        by_containerd(before) > 0,
        "containerd did not fall back to the registry: {:?}",
        &registry.clients()[before..]
    );
}
