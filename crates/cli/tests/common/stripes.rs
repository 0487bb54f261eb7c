//! Where a test cluster puts stripes, and checks on what agents hold:
//! the placement view the agents share, store keys, owner-only warm-up,
//! raw peer requests.

use super::{Cluster, TOKEN};
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The placement view every agent of an `n`-agent test cluster holds
/// (owners and successors depend on names only, not on labels).
pub fn cluster_view(n: usize) -> shoal_placement::View {
    use shoal_placement::{Labels, Member, PlacementConfig, View};
    View::with_members(
        PlacementConfig::default(),
        (0..n).map(|i| Member::new(format!("n{i}"), Labels::default())),
    )
    .unwrap()
}

/// Which test agent (`n{i}`) a node id names.
pub fn agent_index(n: usize, id: shoal_placement::NodeId) -> usize {
    (0..n)
        .find(|&j| shoal_placement::NodeId::from_name(&format!("n{j}")) == id)
        .unwrap()
}

/// The owner and successors (agent indices) of stripe `index` of the
/// object whose identity is `identity` (its digest, when gets pass one).
pub fn successors_of(n: usize, identity: &str, index: u64, r: usize) -> Vec<usize> {
    let key = shoal_placement::Key::for_stripe(identity.as_bytes(), index);
    cluster_view(n)
        .successors(key, r)
        .into_iter()
        .map(|id| agent_index(n, id))
        .collect()
}

/// The hex store key of a stripe, as its file name starts.
pub fn stripe_key_hex(identity: &str, stripe_size: u64, index: u64) -> String {
    let mut h = blake3::Hasher::new();
    h.update(identity.as_bytes());
    h.update(&stripe_size.to_le_bytes());
    h.update(&index.to_le_bytes());
    h.finalize().to_hex().to_string()
}

/// Sends `GET target` with an `Authorization` header to `addr` and
/// returns the response's status code (0 if none came).
pub fn http_status(addr: SocketAddr, target: &str, authorization: &str) -> u16 {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(request.as_bytes());
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls `done` every 50 ms for at most `limit`; true if it came true.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Puts every stripe of an object on its owner only: asks each owner
/// itself, with an empty path, so it reads its stripe from the origin.
/// Returns the number of stripes.
pub fn warm_on_owners(
    cluster: &Cluster,
    url: &str,
    digest: &str,
    size: usize,
    stripe: usize,
) -> u64 {
    use shoal_agent::proto::{ObjectSpec, StripeRef, StripeRequest, Wire};
    let n = cluster.agents.len();
    let object = ObjectSpec {
        url: url.to_owned(),
        size: size as u64,
        validator: None,
        digest: Some(digest.to_owned()),
    };
    let stripes = size.div_ceil(stripe) as u64;
    for i in 0..stripes {
        let part = StripeRef {
            object: object.clone(),
            stripe_size: stripe as u64,
            index: i,
        };
        let req = StripeRequest::new(part, &[], &[], 60_000);
        let owner = successors_of(n, digest, i, 1)[0];
        let target = format!(
            "{}?{}",
            shoal_agent::endpoints::stripe::PATH,
            req.to_query()
        );
        let auth = format!("Bearer {TOKEN}");
        assert_eq!(
            http_status(cluster.agents[owner].peer_addr(), &target, &auth),
            200
        );
        let key = stripe_key_hex(digest, stripe as u64, i);
        assert!(
            eventually(Duration::from_secs(30), || cluster.holders(&key)
                == vec![owner]),
            "stripe {i} should be on n{owner} only, is on {:?}",
            cluster.holders(&key)
        );
    }
    stripes
}

/// Checks that every stripe file any agent holds matches the checksum its
/// name claims and is a true stripe of `data`; returns how many there are.
pub fn assert_admitted_true(cluster: &Cluster, data: &[u8], stripe: usize) -> usize {
    let truth: Vec<String> = data
        .chunks(stripe)
        .map(|s| blake3::hash(s).to_hex().to_string())
        .collect();
    let mut admitted = 0;
    for a in &cluster.agents {
        for (path, claimed) in a.stripes() {
            let actual = blake3::hash(&fs::read(&path).unwrap()).to_hex().to_string();
            assert_eq!(
                actual, claimed,
                "{} holds a stripe that does not match its checksum",
                a.name
            );
            assert!(
                truth.contains(&actual),
                "{} holds a stripe that is not in the object",
                a.name
            );
            admitted += 1;
        }
    }
    admitted
}
