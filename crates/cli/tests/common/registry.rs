//! A real registry for tests: Debian's `docker-registry` on loopback with
//! its access log kept, open or behind authentication (htpasswd, or
//! tokens from an issuer such as `tokens::TokenIssuer`), and images built
//! on disk as OCI layouts (real gzip'd tar layers) and pushed with
//! `skopeo`. `scripts/test` installs both, and `htpasswd`.

use super::{free_port, random_bytes, wait_listening};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// How a [`Registry`] authenticates its clients.
pub enum Auth {
    /// Anyone may pull and push.
    Open,
    /// HTTP Basic against an htpasswd file with one (bcrypt) user: the
    /// registry answers `401` with `WWW-Authenticate: Basic`.
    Htpasswd {
        /// The one user.
        user: String,
        /// Their password.
        password: String,
    },
    /// Docker token auth: the registry answers `401` with
    /// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` and
    /// accepts JWTs that `issuer` signed with a key whose certificate
    /// chains to `bundle`.
    Token {
        /// The token endpoint's URL, as the challenge names it.
        realm: String,
        /// The service name, as the challenge names it; tokens must carry
        /// it as `aud`.
        service: String,
        /// The `iss` tokens must carry.
        issuer: String,
        /// PEM certificates the token signatures must chain to.
        bundle: PathBuf,
    },
}

/// A `docker-registry` process.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Registry {
    /// An open registry on a free loopback port.
    pub fn start() -> Registry {
        Registry::start_with(Auth::Open)
    }

    /// A registry on a free loopback port that authenticates as `auth`
    /// says.
    pub fn start_with(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_yaml = match &auth {
            Auth::Open => String::new(),
            Auth::Htpasswd { user, password } => {
                // bcrypt (-B) is the only hash the registry accepts; cost 5
                // keeps each check fast.
                let mut cmd = Command::new("htpasswd");
                cmd.args(["-Bbn", "-C", "5"]).arg(user).arg(password);
                let hash = super::run_tool(cmd);
                let path = dir.path().join("htpasswd");
                fs::write(&path, &hash).unwrap();
                format!(
                    r#"auth:
  htpasswd:
    realm: shoal-test
    path: "{}"
"#,
                    path.display()
                )
            }
            Auth::Token {
                realm,
                service,
                issuer,
                bundle,
            } => format!(
                r#"auth:
  token:
    realm: "{realm}"
    service: "{service}"
    issuer: "{issuer}"
    rootcertbundle: "{}"
"#,
                bundle.display()
            ),
        };
        // The access log goes to stdout, the app log (with why a request
        // was refused) to stderr.
        let cfg = format!(
            r#"version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: "{data}"
http:
  addr: 127.0.0.1:{port}
  secret: shoal-test
{auth_yaml}"#,
            data = dir.path().join("data").display()
        );
        fs::write(dir.path().join("config.yml"), cfg).unwrap();
        let access = fs::File::create(dir.path().join("access.log")).unwrap();
        let app = fs::File::create(dir.path().join("app.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(access)
            .stderr(app)
            .spawn()
            .expect("docker-registry (scripts/test installs it)");
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "docker-registry");
        Registry { dir, port, child }
    }

    /// `127.0.0.1:PORT`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `HOST=URL`, as `--registry` takes it.
    pub fn upstream(&self) -> String {
        format!("{}=http://{}", self.host(), self.host())
    }

    /// `?ns=HOST` as containerd appends it to every mirror request.
    pub fn ns(&self) -> String {
        format!("?ns={}", self.host().replace(':', "%3A"))
    }

    /// `n` agents in one mesh mirroring this registry, with stripes of
    /// `stripe_size`, a 1 GiB store each and `extra` arguments.
    pub fn mirrors(&self, n: usize, stripe_size: &str, extra: &[&str]) -> super::Cluster {
        let upstream = self.upstream();
        let mut args = vec![
            "--stripe-size",
            stripe_size,
            "--store-budget",
            "1GiB",
            "--registry",
            &upstream,
        ];
        args.extend(extra);
        super::Cluster::new(n, &args)
    }

    /// Pushes the OCI layout at `layout` as `name:tag` with skopeo.
    pub fn push(&self, layout: &Path, name: &str, tag: &str) {
        self.push_with_creds(layout, name, tag, None);
    }

    /// Pushes the OCI layout at `layout` as `name:tag` with skopeo, as
    /// `creds` (`user:password`) if given. Against a token registry skopeo
    /// gets its token from the issuer with these as Basic credentials.
    pub fn push_with_creds(&self, layout: &Path, name: &str, tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false", "--quiet"]);
        if let Some(c) = creds {
            cmd.arg("--dest-creds").arg(c);
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.host()));
        super::run_tool(cmd);
    }

    /// Where the registry listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The registry's own log so far (warnings and errors, such as why it
    /// refused a token), for failure messages.
    pub fn app_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("app.log")).unwrap_or_default()
    }

    /// `(method, target, status, bytes)` of every request so far.
    pub fn log(&self) -> Vec<(String, String, u16, u64)> {
        let text = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let req = l.split('"').nth(1)?;
                let mut r = req.split(' ');
                let (method, target) = (r.next()?.to_owned(), r.next()?.to_owned());
                let mut after = l.split('"').nth(2)?.split_whitespace();
                let status = after.next()?.parse().ok()?;
                let bytes = after.next()?.parse().unwrap_or(0);
                Some((method, target, status, bytes))
            })
            .collect()
    }

    /// `(method, target, user agent)` of every request so far.
    pub fn clients(&self) -> Vec<(String, String, String)> {
        let text = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut quoted = l.split('"');
                let mut req = quoted.nth(1)?.split(' ');
                let agent = quoted.nth(3)?;
                Some((req.next()?.into(), req.next()?.into(), agent.into()))
            })
            .collect()
    }

    /// Body bytes served by GETs of blob `digest` (any repository).
    pub fn blob_bytes(&self, digest: &str) -> u64 {
        let suffix = format!("/blobs/{digest}");
        self.log()
            .iter()
            .filter(|(m, t, s, _)| {
                m == "GET" && t.split('?').next().unwrap_or("").ends_with(&suffix) && *s < 300
            })
            .map(|r| r.3)
            .sum()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image written as an OCI layout.
pub struct Image {
    /// The manifest's digest.
    pub manifest: String,
    /// `(digest, size)` of the config and each layer.
    pub blobs: Vec<(String, u64)>,
}

fn sha256_file(p: &Path) -> String {
    super::sha256(&fs::read(p).unwrap())
}

/// Builds an OCI layout at `dir` with one layer per entry of
/// `layer_sizes` (a file of that many random bytes, tarred and gzipped;
/// random data does not compress, so the layer is about that size).
pub fn build_image(dir: &Path, tag: &str, layer_sizes: &[usize], seed: u64) -> Image {
    let work = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let root = work.path().join(format!("l{i}"));
            fs::create_dir_all(root.join(format!("data{i}"))).unwrap();
            fs::write(
                root.join(format!("data{i}/random.bin")),
                random_bytes(size, seed + i as u64),
            )
            .unwrap();
            root
        })
        .collect();
    write_layout(dir, tag, &roots, serde_json::json!({"Cmd": ["/bin/sh"]}))
}

/// Writes an OCI layout at `dir` whose layers are the directory trees
/// `roots` (tarred reproducibly and gzipped) and whose image config is
/// `config` (Entrypoint, Cmd, ...).
pub fn write_layout(dir: &Path, tag: &str, roots: &[PathBuf], config: serde_json::Value) -> Image {
    let blobs_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs_dir).unwrap();
    let work = tempfile::tempdir().unwrap();
    let put = |path: &Path| -> (String, u64) {
        let digest = sha256_file(path);
        let size = fs::metadata(path).unwrap().len();
        fs::copy(path, blobs_dir.join(&digest["sha256:".len()..])).unwrap();
        (digest, size)
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let tar = work.path().join(format!("l{i}.tar"));
        let ok = Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-C",
            ])
            .arg(root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar failed");
        diff_ids.push(sha256_file(&tar));
        let ok = Command::new("gzip")
            .args(["-n", "-1", "-f"])
            .arg(&tar)
            .status()
            .unwrap()
            .success();
        assert!(ok, "gzip failed");
        layers.push(put(&tar.with_extension("tar.gz")));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_path = work.path().join("config.json");
    fs::write(&config_path, config.to_string()).unwrap();
    let config_blob = put(&config_path);
    let layer_json: Vec<_> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_blob.0, "size": config_blob.1},
        "layers": layer_json,
    });
    let manifest_path = work.path().join("manifest.json");
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    let (manifest_digest, manifest_size) = put(&manifest_path);
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let mut blobs = vec![config_blob];
    blobs.extend(layers);
    Image {
        manifest: manifest_digest,
        blobs,
    }
}

/// The test registry user.
pub const USER: &str = "alice";
/// Their password.
pub const PASSWORD: &str = "s3cret";

/// Writes a docker `config.json` in `dir` holding `user:password` for
/// `host`, as `--registry-credentials` reads it.
pub fn credentials_file(dir: &Path, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::prelude::{BASE64_STANDARD, Engine as _};
    let mut auths = serde_json::Map::new();
    auths.insert(
        host.to_owned(),
        serde_json::json!({"auth": BASE64_STANDARD.encode(format!("{user}:{password}"))}),
    );
    let path = dir.join("config.json");
    fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
    path
}

/// A docker `config.json` with the test user's credentials for `host`:
/// the directory holding it (keep it alive) and its path.
pub fn alice_for(host: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = credentials_file(dir.path(), host, USER, PASSWORD)
        .display()
        .to_string();
    (dir, path)
}
