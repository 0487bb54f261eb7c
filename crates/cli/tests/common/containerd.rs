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
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
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
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(self.certs_dir())
            .arg(reference)
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
