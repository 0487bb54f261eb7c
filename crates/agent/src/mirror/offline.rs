//! What the mirror does for a manifest it has never seen while the
//! registry cannot tell it the size: ask the nodes that own the
//! manifest's stripes how long their stored copies are. The manifest's
//! bytes then come through the mesh as usual and are checked against the
//! digest, so a wrong answer costs a failed pull, never a wrong one.

use crate::endpoints::stat;
use crate::node::Node;
use crate::proto::{ObjectSpec, StripeRef};
use shoal_oci::manifest::MAX_MANIFEST;
use std::sync::Arc;

/// The size of the object `spec` names (its `size` is ignored), summed
/// from the stored lengths of its stripes on this node or their owners
/// and stand-ins. `None` if some stripe is nowhere to be found, or the
/// answers cannot be a manifest's (a stripe longer than a stripe, a total
/// past [`MAX_MANIFEST`]). When every stripe so far was whole and the next
/// is nowhere, the total is a candidate: the object may end on a stripe
/// boundary, and the digest check of the bytes fetched with that size
/// settles it.
pub async fn size_from_mesh(node: &Arc<Node>, spec: &ObjectSpec) -> Option<u64> {
    let ss = node.cfg.stripe_size;
    let mut total = 0u64;
    for index in 0.. {
        let mut probe = spec.clone();
        // Any size that makes `index` a whole stripe: identity by digest
        // does not depend on it.
        probe.size = (index + 1) * ss;
        let Some(len) = stripe_len(node, probe, index).await else {
            return (index > 0).then_some(total);
        };
        if len > ss {
            tracing::warn!(len, "a peer claims a stripe longer than the stripe size");
            return None;
        }
        total += len;
        if total > MAX_MANIFEST {
            return None;
        }
        if len < ss {
            return Some(total);
        }
    }
    None
}

async fn stripe_len(node: &Arc<Node>, object: ObjectSpec, index: u64) -> Option<u64> {
    let stripe = StripeRef {
        object,
        stripe_size: node.cfg.stripe_size,
        index,
    };
    let own = stat::stored_len(&node.store, stripe.entry_key()).await;
    if own.is_some() {
        return own;
    }
    let m = node.membership.load();
    let path = node.path_to(&m, stripe.key());
    // The owner first, then its stand-ins, then the nearer hops.
    let hops = path.hops();
    let mut candidates: Vec<_> = hops.last().copied().into_iter().collect();
    candidates.extend(path.fallbacks());
    candidates.extend(hops.iter().rev().skip(1));
    for id in candidates {
        if id == node.id {
            continue;
        }
        let Some(&addr) = m.addrs.get(&id) else {
            continue;
        };
        match stat::ask(&node.peer_client, addr, &stripe, crate::timing::HINT).await {
            Ok(Some(len)) => return Some(len),
            Ok(None) => {}
            Err(e) => tracing::debug!(peer = %addr, "stat failed: {e}"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerConfig;
    use crate::endpoints::stat;
    use crate::proto::StripeQuery;
    use axum::extract::Query;
    use axum::response::IntoResponse;
    use http::StatusCode;

    const SS: u64 = 64 * 1024;

    type Claim = Arc<dyn Fn(u64) -> Option<u64> + Send + Sync>;

    /// One agent whose only peer answers every stat with `claim(index)`
    /// (`None`: 404), as a peer that lies or is confused might.
    async fn beside(claim: Claim, dir: &tempfile::TempDir) -> crate::Running {
        let app = axum::Router::new().route(
            stat::PATH,
            axum::routing::get(move |Query(q): Query<StripeQuery>| {
                let claim = claim.clone();
                async move {
                    match claim(q.i) {
                        Some(n) => {
                            (StatusCode::OK, [(stat::LEN_HEADER, n.to_string())]).into_response()
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        let mut c = crate::AgentConfig {
            name: "n0".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            stripe_size: SS,
            store_budget: shoal_store::Budget::Bytes(1 << 20),
            peers: vec![PeerConfig {
                name: "n1".into(),
                addr: peer,
                labels: Vec::new(),
            }],
            ..crate::AgentConfig::default()
        };
        c.mirror.listen = "127.0.0.1:0".parse().unwrap();
        crate::start(c.resolve().unwrap()).await.unwrap()
    }

    async fn sized(claim: Claim) -> Option<u64> {
        let dir = tempfile::tempdir().unwrap();
        let a = beside(claim, &dir).await;
        let spec = ObjectSpec {
            url: "http://registry.invalid/v2/x/manifests/sha256:1".into(),
            size: 0,
            validator: None,
            digest: Some(format!("sha256:{}", "a".repeat(64))),
        };
        let size = size_from_mesh(&a.node, &spec).await;
        a.stop().await;
        size
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_size_from_the_mesh_stays_within_a_manifest_s_bounds() {
        // Honest: one whole stripe and a short one.
        let honest: Claim = Arc::new(|i| [Some(SS), Some(100)].get(i as usize).copied().flatten());
        assert_eq!(sized(honest).await, Some(SS + 100));
        // Ending on a stripe boundary: two whole stripes, then none.
        let boundary: Claim = Arc::new(|i| (i < 2).then_some(SS));
        assert_eq!(sized(boundary).await, Some(2 * SS));
        // A stripe longer than a stripe is refused.
        let long: Claim = Arc::new(|i| [Some(SS), Some(SS + 1)].get(i as usize).copied().flatten());
        assert_eq!(sized(long).await, None);
        // Whole stripes without end: never past the largest manifest.
        let endless: Claim = Arc::new(|_| Some(SS));
        assert_eq!(sized(endless).await, None);
    }
}
