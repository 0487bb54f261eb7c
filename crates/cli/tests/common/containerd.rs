//! Real containerd daemons for tests, each with its own root, state,
//! socket and `certs.d`, driven with `ctr`. `scripts/test` installs
//! containerd; pulling and unpacking needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether containerd can run here. Skips (with a message) when it
/// cannot, unless `SHOAL_REQUIRE_PRIVILEGED` is set.
pub fn available() -> bool {
    super::privileged(&[("containerd", "--version"), ("ctr", "--version")])
}

/// One containerd daemon.
pub struct Containerd {
    pub dir: PathBuf,
    child: Child,
}

impl Containerd {
    /// Starts a daemon under `dir` (created), CRI off: `ctr` is the client.
    pub fn start(dir: &Path) -> Containerd {
        fs::create_dir_all(dir.join("certs.d")).unwrap();
        let d = dir.display();
        let cfg = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{d}/opt\"\n"
        );
        fs::write(dir.join("config.toml"), cfg).unwrap();
        Containerd::spawn(dir, &dir.join("config.toml"))
    }

    /// Starts a daemon under `dir` with its CRI plugin on, as on a
    /// Kubernetes node: hosts files from `dir/etc/containerd/certs.d`
    /// (`registry.config_path`, which its config at
    /// `dir/etc/containerd/config.toml` sets), the native snapshotter,
    /// `sandbox_image` as the pause image (imported beforehand: no public
    /// registry is reachable), and `restrict_oom_score_adj`, which runc
    /// needs in this sandbox. No CNI: host-network pods need none.
    pub fn start_cri(dir: &Path, sandbox_image: &str) -> Containerd {
        let etc = dir.join("etc/containerd");
        fs::create_dir_all(etc.join("certs.d")).unwrap();
        fs::create_dir_all(dir.join("cni")).unwrap();
        let d = dir.display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let cfg = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n\
             [{cri}]\n  sandbox_image = \"{sandbox_image}\"\n  restrict_oom_score_adj = true\n\
             [{cri}.containerd]\n  snapshotter = \"native\"\n\
             [{cri}.cni]\n  bin_dir = \"{d}/cni\"\n  conf_dir = \"{d}/cni\"\n\
             [{cri}.registry]\n  config_path = \"{d}/etc/containerd/certs.d\"\n"
        );
        let config = etc.join("config.toml");
        fs::write(&config, cfg).unwrap();
        Containerd::spawn(dir, &config)
    }

    fn spawn(dir: &Path, config: &Path) -> Containerd {
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd (scripts/test installs it)");
        let c = Containerd {
            dir: dir.to_owned(),
            child,
        };
        let start = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not start: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// The daemon's socket (for `ctr` and CRI clients).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// Imports an OCI archive into the `k8s.io` namespace, where the CRI
    /// plugin finds images, unpacked for the native snapshotter.
    pub fn import(&self, archive: &Path) {
        let archive = archive.to_string_lossy();
        let out = self.ctr(&[
            "-n",
            "k8s.io",
            "images",
            "import",
            "--snapshotter",
            "native",
            &archive,
        ]);
        assert!(
            out.status.success(),
            "ctr images import {archive}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The hosts directory `ctr --hosts-dir` reads.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// Runs `ctr` against this daemon.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(args)
            .output()
            .unwrap()
    }

    /// A `ctr images pull` of `reference` through this daemon's certs.d,
    /// unpacked with the native snapshotter (not yet waited for).
    pub fn spawn_pull(&self, reference: &str) -> Child {
        self.spawn_pull_as(reference, None)
    }

    /// [`Containerd::spawn_pull`] with `user:password` credentials, which
    /// containerd sends to any host (mirror or registry) that challenges.
    pub fn spawn_pull_as(&self, reference: &str, user: Option<&str>) -> Child {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(self.certs_dir());
        if let Some(u) = user {
            cmd.args(["--user", u]);
        }
        cmd.arg(reference)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Snapshots the native snapshotter holds (one per unpacked layer).
    pub fn snapshots(&self) -> usize {
        let out = self.ctr(&["snapshots", "--snapshotter", "native", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|l| l.contains("Committed"))
            .count()
    }

    /// The file the unpacked layers put at `path`, found in any snapshot.
    pub fn unpacked_file(&self, path: &str) -> Option<Vec<u8>> {
        let snaps = self
            .dir
            .join("root/io.containerd.snapshotter.v1.native/snapshots");
        fs::read_dir(snaps)
            .ok()?
            .filter_map(|e| e.ok())
            .find_map(|e| fs::read(e.path().join(path)).ok())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Containers outlive their daemon and shim unless killed first.
        for ns in ["k8s.io", "default"] {
            let tasks = self.ctr(&["-n", ns, "tasks", "ls", "-q"]);
            for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
                let _ = self.ctr(&["-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id]);
                let start = Instant::now();
                while !self
                    .ctr(&["-n", ns, "tasks", "delete", id])
                    .status
                    .success()
                    && start.elapsed() < Duration::from_secs(5)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
