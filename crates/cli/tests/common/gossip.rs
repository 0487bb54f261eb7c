//! What gossiping test agents see of each other, read from their status
//! endpoints.

use super::{Agent, Cluster, eventually};
use shoal_membership::MemberState;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `name`'s state and generation as `a` sees it.
pub fn seen(a: &Agent, name: &str) -> Option<(MemberState, u64)> {
    let s = a.status()?;
    s.members
        .iter()
        .find(|m| m.name == name)
        .map(|m| (m.state, m.generation))
}

pub fn alive_count(a: &Agent) -> usize {
    a.status().map_or(0, |s| {
        s.members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count()
    })
}

pub fn converge(cluster: &Cluster, n: usize) {
    let ok = eventually(Duration::from_secs(30), || {
        cluster.agents.iter().all(|a| alive_count(a) == n)
    });
    assert!(
        ok,
        "the agents never all saw {n} members:\n{}",
        cluster.problems()
    );
}

/// Polls every agent not in `gone` until each sees every member of
/// `gone` down; returns the time each took, from `since`, sorted. The
/// time is when the agent says it saw the last of them go down (its
/// status's `changed_ms`), so a late first poll does not inflate it.
pub fn drop_times(
    cluster: &Cluster,
    gone: &[usize],
    since: Instant,
    limit: Duration,
) -> Vec<Duration> {
    let names: Vec<String> = gone.iter().map(|g| format!("n{g}")).collect();
    let watchers: Vec<usize> = (0..cluster.agents.len())
        .filter(|i| !gone.contains(i))
        .collect();
    let since_unix_ms = unix_ms().saturating_sub(since.elapsed().as_millis() as u64);
    let mut times = vec![None; cluster.agents.len()];
    while since.elapsed() < limit && watchers.iter().any(|&i| times[i].is_none()) {
        for &i in &watchers {
            if times[i].is_some() {
                continue;
            }
            let Some(status) = cluster.agents[i].status() else {
                continue;
            };
            let down: Vec<u64> = status
                .members
                .iter()
                .filter(|m| names.contains(&m.name) && m.state == MemberState::Down)
                .map(|m| m.changed_ms)
                .collect();
            if down.len() == names.len() {
                let last = down.into_iter().max().unwrap_or(0);
                let t = Duration::from_millis(last.saturating_sub(since_unix_ms));
                times[i] = Some(t.min(since.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let missing: Vec<usize> = watchers
        .iter()
        .copied()
        .filter(|&i| times[i].is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "agents {missing:?} never dropped {names:?}"
    );
    let mut t: Vec<Duration> = times.into_iter().flatten().collect();
    t.sort();
    t
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
