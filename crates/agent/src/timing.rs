//! Every fixed duration the agent uses, in one place. The bounds an
//! operator tunes (connect, first byte, stall, the request deadline,
//! breakers, gossip's timers, the Node lookup's budget) are settings; these
//! are the rest, and why each is what it is.

use std::time::Duration;

/// The end-to-end budget, all retries included, of a peer's stripe
/// request that names none (every shoal sends one; the setting that sizes
/// the budgets a node sends is `timeouts.deadline_ms`).
pub const UNNAMED_DEADLINE_MS: u64 = 120_000;

/// The longest budget a peer may ask for (an hour).
pub const MAX_DEADLINE_MS: u64 = 3_600_000;

/// How often a stripe stream carries a keepalive frame while its bytes
/// are not there yet, so a receiver tells a slow sender from a dead one.
/// Stall timeouts (1.5 s at least) are three of these.
pub const KEEPALIVE_EVERY: Duration = Duration::from_millis(500);

/// Adaptive peer timeouts from a peer's smoothed round trip `rtt`, before
/// the settings' floors and ceilings clamp them: connect within three
/// round trips; the first byte within four plus this much server time;
/// no silence inside a body longer than four plus this much.
pub const FIRST_BYTE_SLACK: Duration = Duration::from_millis(100);
/// See [`FIRST_BYTE_SLACK`].
pub const STALL_SLACK: Duration = Duration::from_secs(1);

/// How long a hint to a peer (replicate, suspect, purge) may take.
pub const HINT: Duration = Duration::from_secs(5);

/// How long an idle pooled connection to an origin is kept.
pub const POOL_IDLE: Duration = Duration::from_secs(60);

/// How long an idle pooled connection to a peer is kept: well under the
/// 10 s a peer's server waits for the next request's headers (the
/// default `header_read_timeout_ms`), so a request never races the
/// peer closing the connection under it.
pub const PEER_POOL_IDLE: Duration = Duration::from_secs(5);

/// How long a roster fetch from a seed or a member may take.
pub const ROSTER: Duration = Duration::from_secs(2);

/// Connecting to an origin: origins are farther away than peers and
/// not adaptive.
pub const ORIGIN_CONNECT: Duration = Duration::from_secs(10);

/// The longest silence from an origin inside a body before the fetch is
/// retried.
pub const ORIGIN_STALL: Duration = Duration::from_secs(30);

/// Transient origin failures are tried this many times in all, waiting
/// [`ORIGIN_BACKOFF`] and then twice as long each time, within the
/// request's deadline.
pub const ORIGIN_ATTEMPTS: u32 = 4;
/// See [`ORIGIN_ATTEMPTS`].
pub const ORIGIN_BACKOFF: Duration = Duration::from_millis(200);

/// How long a leaving node waits for gossip to announce its leave.
pub const LEAVE: Duration = Duration::from_secs(1);

/// The Node lookup: connecting to the API server, one request, and the
/// first wait between retries (doubling up to [`KUBE_BACKOFF_MAX`]).
pub const KUBE_CONNECT: Duration = Duration::from_secs(2);
/// See [`KUBE_CONNECT`].
pub const KUBE_REQUEST: Duration = Duration::from_secs(4);
/// See [`KUBE_CONNECT`].
pub const KUBE_BACKOFF: Duration = Duration::from_millis(250);
/// See [`KUBE_CONNECT`].
pub const KUBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The longest an open breaker waits before its next half-open probe
/// (its wait doubles from `Timeouts::breaker_cooldown_ms` up to this).
pub const BREAKER_MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// How often the peer TLS files are checked for a change (a rotated
/// certificate is in use within this).
pub const TLS_RELOAD: Duration = Duration::from_secs(2);
