//! A real token issuer for `docker-registry`'s token auth (distribution
//! 2.8), for tests: it checks Basic credentials and answers with ES256 JWTs
//! that carry their certificate in `x5c`, granting exactly the scopes
//! asked for. Its key and self-signed certificate are made with the
//! `openssl` CLI; the certificate is the registry's `rootcertbundle`.
//!
//! What the registry accepts (found by hand against 2.8.2): compact JWS
//! in base64url without padding; `alg` ES256 with the signature as raw
//! `r||s`; `x5c` in standard base64 with padding; `aud` a plain string
//! equal to the service; `iss` equal to the issuer; `exp` present.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use base64::prelude::{BASE64_STANDARD, BASE64_URL_SAFE_NO_PAD, Engine as _};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `iss` of every token; the registry's `auth.token.issuer`.
pub const ISSUER: &str = "shoal-test-issuer";

/// The `aud` of every token; the registry's `auth.token.service`.
pub const SERVICE: &str = "shoal-test-registry";

/// How long a token lives, in seconds (its `exp` and `expires_in`).
pub const TOKEN_TTL: u64 = 300;

/// A token server on a loopback port, run by its own thread until
/// dropped.
pub struct TokenIssuer {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    issued: Arc<AtomicUsize>,
    scopes: Arc<Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the request handlers share.
struct Shared {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The certificate's DER in standard base64, for `x5c`.
    x5c: String,
    user: String,
    password: String,
    issued: Arc<AtomicUsize>,
    scopes: Arc<Mutex<Vec<String>>>,
}

/// Runs `openssl <args>` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    super::openssl(dir, &args.split_whitespace().collect::<Vec<_>>());
}

impl TokenIssuer {
    /// Makes a fresh P-256 key and certificate and starts serving tokens
    /// to `user` with `password`.
    pub fn start(user: &str, password: &str) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(d, "ecparam -name prime256v1 -genkey -noout -out ec.key");
        openssl(
            d,
            "req -new -x509 -key ec.key -out ec.crt -days 3650 -subj /CN=shoal-test-issuer",
        );
        // ring takes the key as PKCS#8 DER (with the public key inside,
        // as openssl writes it); x5c wants the certificate as DER.
        openssl(
            d,
            "pkcs8 -topk8 -nocrypt -in ec.key -outform DER -out ec.p8",
        );
        openssl(d, "x509 -in ec.crt -outform DER -out ec.der");
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &fs::read(d.join("ec.p8")).unwrap(),
            &rng,
        )
        .expect("ring takes openssl's PKCS#8 P-256 key");
        let x5c = BASE64_STANDARD.encode(fs::read(d.join("ec.der")).unwrap());

        let issued = Arc::new(AtomicUsize::new(0));
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            key,
            rng,
            x5c,
            user: user.to_owned(),
            password: password.to_owned(),
            issued: issued.clone(),
            scopes: scopes.clone(),
        });
        let app = Router::new()
            .route("/token", get(get_token).post(post_token))
            .with_state(shared);

        // Bound here, so it accepts (into the backlog) before `start`
        // returns; the thread's runtime takes the connections from there.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("token-issuer".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the token issuer");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("the token issuer's listener");
                    tokio::select! {
                        _ = axum::serve(listener, app).into_future() => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime here drops every connection task.
            })
            .expect("spawn the token issuer's thread");
        TokenIssuer {
            dir,
            addr,
            issued,
            scopes,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token`: the registry's
    /// `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The service name tokens are for ([`SERVICE`]).
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The issuer name tokens carry ([`ISSUER`]).
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// The PEM certificate that signs the tokens: the registry's
    /// `auth.token.rootcertbundle`.
    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("ec.crt")
    }

    /// How many tokens it has issued so far (refused requests do not
    /// count).
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    /// Every scope granted so far, in order, one entry per scope per
    /// token (`repository:team/app:pull`).
    pub fn scopes(&self) -> Vec<String> {
        self.scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as RFC 3339 in UTC (`2026-11-23T12:35:01Z`).
fn rfc3339(secs: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// One `type:name:actions` scope as a JWT `access` entry. The name is
/// split off from the right: it may hold a `host:port`.
fn parse_scope(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
}

fn b64url(bytes: &[u8]) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

impl Shared {
    /// Whether `Authorization` carries this issuer's user and password.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return false;
        };
        let expected = format!("{}:{}", self.user, self.password);
        scheme.eq_ignore_ascii_case("basic")
            && BASE64_STANDARD
                .decode(encoded.trim())
                .is_ok_and(|raw| raw == expected.as_bytes())
    }

    /// A signed token granting `scopes` (each may hold several,
    /// space-separated, as OAuth2 sends them).
    fn mint(&self, scopes: &[String], now: u64) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(parse_scope)
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random bytes for jti");
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": self.user,
            "aud": SERVICE,
            "exp": now + TOKEN_TTL,
            "nbf": now - 10,
            "iat": now,
            "jti": hex::encode(jti),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        // FIXED: the raw 64-byte r||s that JWS wants (not DER).
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("ES256 signing");
        format!("{input}.{}", b64url(sig.as_ref()))
    }
}

fn json(status: StatusCode, body: &serde_json::Value, challenge: Option<&str>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = challenge {
        b = b.header(header::WWW_AUTHENTICATE, c);
    }
    b.body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// `GET /token?service=..&scope=..&scope=..&account=..` with Basic
/// credentials: the Docker token flow (what skopeo, the agent and
/// containerd without credentials use). Without credentials it grants
/// pulls of `public/...` repositories only.
async fn get_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    // Anyone may pull the repositories under `public/`.
    let public = !scopes.is_empty()
        && scopes.iter().flat_map(|x| x.split(' ')).all(|x| {
            x.strip_prefix("repository:public/")
                .is_some_and(|rest| rest.ends_with(":pull"))
        });
    let anonymous = !headers.contains_key(header::AUTHORIZATION);
    let granted = s.authorized(&headers) || (anonymous && public);
    if !granted {
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "wrong or missing credentials"}]}),
            Some(&format!("Basic realm=\"{ISSUER}\"")),
        );
    }
    if params.iter().any(|(k, v)| k == "service" && v != SERVICE) {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]}),
            None,
        );
    }
    let now = unix_now();
    let token = s.mint(&scopes, now);
    s.scopes.lock().unwrap_or_else(|p| p.into_inner()).extend(
        scopes
            .iter()
            .flat_map(|x| x.split(' '))
            .filter(|x| !x.is_empty())
            .map(str::to_owned),
    );
    s.issued.fetch_add(1, Ordering::SeqCst);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_TTL,
            "issued_at": rfc3339(now),
        }),
        None,
    )
}

/// `POST /token`, containerd's OAuth2 password grant: 404, so that
/// containerd falls back to `GET` with Basic (it does on 400, 401, 404
/// and 405).
async fn post_token() -> StatusCode {
    StatusCode::NOT_FOUND
}
