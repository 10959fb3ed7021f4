//! Which channels this replica delivers: a fair share of the configured
//! channels, each held by a lease in the store that only one live replica
//! has at a time.
//!
//! Every [`TICK`] a replica beats, renews its leases and plans: it takes
//! free channels (never leased, handed back, lapsed, or held by a replica
//! that is no longer alive) up to its share, and hands back what it holds
//! above its share while another live replica is below its own. Shares
//! are `n / live` channels, the remainder going to the first replicas by
//! id, so the replicas agree on them from the same rows. The plan is a pure
//! function of what the store says; the store arbitrates races (a take
//! succeeds for one replica only).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use serde::Serialize;

use crate::store::{LeaseRow, ReplicaRow};

/// How often a replica beats, renews and plans.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a lease and a registration last without renewal: a replica
/// that hangs or is cut off loses its channels this long after its last
/// beat (a dead process sooner, when the database sees its session end),
/// so a channel is taken over within `LEASE_TTL + TICK`, inside the 15 s
/// the spec allows.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// What one tick decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free channels to try to take, best first.
    pub take: Vec<String>,
    /// Held channels to hand back.
    pub release: Vec<String>,
}

/// This replica's preference for a channel (rendezvous hashing): each
/// replica ranks the channels differently, so replicas taking at the same
/// moment mostly reach for different ones.
fn preference(replica: &str, channel: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (replica, channel).hash(&mut h);
    h.finish()
}

/// How many channels the `i`-th live replica (by id) should hold.
fn share(i: usize, live: usize, channels: usize) -> usize {
    if live == 0 {
        return 0;
    }
    channels / live + usize::from(i < channels % live)
}

/// Plan one tick for replica `me`: `live` are the live replicas' ids (with
/// `me`), `channels` the configured channel names, `leases` every lease
/// row, `now` Unix ms.
pub fn plan(me: &str, live: &[String], channels: &[String], leases: &[LeaseRow], now: i64) -> Plan {
    let mut live: Vec<&str> = live.iter().map(String::as_str).collect();
    if !live.contains(&me) {
        live.push(me);
    }
    live.sort_unstable();
    live.dedup();
    let configured: HashSet<&str> = channels.iter().map(String::as_str).collect();
    let holder_of: HashMap<&str, &str> = leases
        .iter()
        .filter(|l| l.expires_at > now)
        .filter_map(|l| l.holder.as_deref().map(|h| (l.channel.as_str(), h)))
        .filter(|(_, h)| live.contains(h))
        .collect();
    let mut held: HashMap<&str, Vec<&str>> = HashMap::new();
    for (channel, holder) in &holder_of {
        if configured.contains(channel) {
            held.entry(holder).or_default().push(channel);
        }
    }
    let target = |replica: &str| {
        let i = live.iter().position(|r| *r == replica).unwrap_or(live.len());
        share(i, live.len(), configured.len())
    };
    let count = |replica: &str| held.get(replica).map_or(0, Vec::len);
    let mine = count(me);
    let my_target = target(me);
    let mut plan = Plan::default();
    // Leases of channels no longer configured go back at once.
    for (channel, holder) in &holder_of {
        if *holder == me && !configured.contains(channel) {
            plan.release.push((*channel).to_owned());
        }
    }
    let someone_short = live.iter().any(|r| *r != me && count(r) < target(r));
    if mine > my_target && someone_short {
        let mut ours: Vec<&str> = held.get(me).cloned().unwrap_or_default();
        ours.sort_by_key(|c| preference(me, c));
        plan.release
            .extend(ours.iter().take(mine - my_target).map(|c| (*c).to_owned()));
    }
    let mut free: Vec<&str> = channels
        .iter()
        .map(String::as_str)
        .filter(|c| !holder_of.contains_key(c))
        .collect();
    free.sort_by_key(|c| std::cmp::Reverse(preference(me, c)));
    // Below its share a replica takes up to it; at or above, it still
    // takes what nobody else is short of (channels must never stay
    // undelivered because the replicas' counts disagree for a moment).
    let room = if mine < my_target {
        my_target - mine
    } else if someone_short {
        0
    } else {
        free.len()
    };
    plan.take = free.into_iter().take(room).map(str::to_owned).collect();
    plan.release.sort();
    plan.release.dedup();
    plan
}

/// What `GET /v1/replicas` shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicasView {
    /// Every registered replica.
    pub replicas: Vec<ReplicaView>,
    /// Configured channels no live replica holds right now.
    pub unheld: Vec<String>,
}

/// One replica and the channels it delivers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplicaView {
    /// Replica id.
    pub id: String,
    /// Where it listens.
    pub listen: String,
    /// Whether the store still sees its process.
    pub alive: bool,
    /// When it joined (RFC 3339 in the API).
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: i64,
    /// Its last heartbeat.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub heartbeat_at: i64,
    /// When its registration lapses without a heartbeat.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    /// The leases it holds (none once it is not alive).
    pub channels: Vec<HeldView>,
}

/// One lease a replica holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldView {
    /// Channel name.
    pub channel: String,
    /// The grant.
    pub epoch: i64,
    /// When it lapses unless renewed.
    #[serde(serialize_with = "crate::api_time::at")]
    #[schema(value_type = String, format = DateTime)]
    pub lease_expires_at: i64,
}

/// Who delivers what, from the store's rows: a lease counts only while
/// its holder is alive and it has not lapsed.
pub fn view(replicas: &[ReplicaRow], leases: &[LeaseRow], configured: &[String], now: i64) -> ReplicasView {
    let alive: HashSet<&str> = replicas
        .iter()
        .filter(|r| r.alive)
        .map(|r| r.id.as_str())
        .collect();
    let live_lease =
        |l: &&LeaseRow| l.expires_at > now && l.holder.as_deref().is_some_and(|h| alive.contains(h));
    let held: HashSet<&str> = leases
        .iter()
        .filter(live_lease)
        .map(|l| l.channel.as_str())
        .collect();
    ReplicasView {
        replicas: replicas
            .iter()
            .map(|r| ReplicaView {
                id: r.id.clone(),
                listen: r.listen.clone(),
                alive: r.alive,
                started_at: r.started_at,
                heartbeat_at: r.heartbeat_at,
                expires_at: r.expires_at,
                channels: leases
                    .iter()
                    .filter(live_lease)
                    .filter(|l| l.holder.as_deref() == Some(r.id.as_str()))
                    .map(|l| HeldView {
                        channel: l.channel.clone(),
                        epoch: l.epoch,
                        lease_expires_at: l.expires_at,
                    })
                    .collect(),
            })
            .collect(),
        unheld: configured
            .iter()
            .filter(|c| !held.contains(c.as_str()))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(channel: &str, holder: Option<&str>, expires_at: i64) -> LeaseRow {
        LeaseRow {
            channel: channel.to_owned(),
            holder: holder.map(str::to_owned),
            epoch: 1,
            expires_at,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn a_lone_replica_takes_every_channel() {
        let p = plan("a", &["a".into()], &names(5), &[], 0);
        assert_eq!(p.take.len(), 5);
        assert!(p.release.is_empty());
    }

    #[test]
    fn channels_of_a_dead_or_lapsed_holder_are_free() {
        let leases = vec![
            row("c0", Some("dead"), 10_000),
            row("c1", Some("b"), 5),
            row("c2", Some("b"), 10_000),
        ];
        let live = vec!["a".to_owned(), "b".to_owned()];
        let p = plan("a", &live, &names(3), &leases, 100);
        // a's share of 3 over 2 is 2: c0 (dead holder) and c1 (lapsed).
        let mut take = p.take.clone();
        take.sort();
        assert_eq!(take, vec!["c0".to_owned(), "c1".to_owned()]);
    }

    #[test]
    fn a_replica_above_its_share_hands_back_to_one_that_joined() {
        let leases: Vec<LeaseRow> = names(4).iter().map(|c| row(c, Some("a"), 10_000)).collect();
        let live = vec!["a".to_owned(), "b".to_owned()];
        let p = plan("a", &live, &names(4), &leases, 0);
        assert_eq!(p.release.len(), 2);
        assert!(p.take.is_empty());
        // And b takes nothing it cannot: all are held until a lets go.
        let p = plan("b", &live, &names(4), &leases, 0);
        assert!(p.take.is_empty() && p.release.is_empty());
    }

    #[test]
    fn leases_of_channels_no_longer_configured_go_back() {
        let leases = vec![row("gone", Some("a"), 10_000)];
        let p = plan("a", &["a".into()], &names(1), &leases, 0);
        assert_eq!(p.release, vec!["gone".to_owned()]);
        assert_eq!(p.take, vec!["c0".to_owned()]);
    }

    /// Run every replica's plan in turn, the store granting a take only
    /// when the channel is free, until nothing changes.
    fn settle(replicas: &[String], channels: &[String], mut leases: Vec<LeaseRow>) -> Vec<LeaseRow> {
        for _ in 0..20 {
            let mut changed = false;
            for me in replicas {
                let p = plan(me, replicas, channels, &leases, 0);
                for c in &p.release {
                    if let Some(l) = leases.iter_mut().find(|l| &l.channel == c) {
                        l.holder = None;
                        changed = true;
                    }
                }
                for c in &p.take {
                    match leases.iter_mut().find(|l| &l.channel == c) {
                        Some(l) if l.holder.as_ref().is_none_or(|h| !replicas.contains(h)) => {
                            l.holder = Some(me.clone());
                            l.expires_at = 10_000;
                            changed = true;
                        }
                        Some(_) => {}
                        None => {
                            leases.push(row(c, Some(me), 10_000));
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        leases
    }

    proptest! {
        /// From any start (any holders, dead ones included), the replicas
        /// settle with every channel held by exactly one live replica and
        /// shares differing by at most one.
        #[test]
        fn replicas_settle_on_a_fair_cover(
            n_replicas in 1usize..5,
            n_channels in 0usize..30,
            start in proptest::collection::vec(0usize..7, 0..30),
        ) {
            let replicas: Vec<String> = (0..n_replicas).map(|i| format!("r{i}")).collect();
            let channels = names(n_channels);
            let leases: Vec<LeaseRow> = start
                .iter()
                .zip(&channels)
                .map(|(h, c)| row(c, Some(&format!("r{h}")), 10_000))
                .collect();
            let settled = settle(&replicas, &channels, leases);
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for c in &channels {
                let l = settled.iter().find(|l| &l.channel == c);
                let holder = l.and_then(|l| l.holder.as_deref());
                prop_assert!(holder.is_some_and(|h| replicas.iter().any(|r| r == h)), "{c} not held by a live replica");
                *counts.entry(holder.unwrap_or_default()).or_default() += 1;
            }
            let most = replicas.iter().map(|r| counts.get(r.as_str()).copied().unwrap_or(0)).max().unwrap_or(0);
            let least = replicas.iter().map(|r| counts.get(r.as_str()).copied().unwrap_or(0)).min().unwrap_or(0);
            prop_assert!(most - least <= 1, "shares {counts:?}");
        }
    }
}
