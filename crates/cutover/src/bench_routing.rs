//! The staged-rollout routing phase of `cutover bench`: routing decisions per second in the
//! pure core (no server, no database), on every core.
//!
//! The directory is built in memory from plain core structs: `--routing-groups` group ids,
//! ten [`FeatureRolloutPolicy`] values of ten groups each — two per feature, all enabled,
//! constructed directly (the admin API allows one policy per feature, and never
//! passwordHashSync together with passthroughAuthentication) — and `--routing-users` synced
//! users of one federated domain, each a direct member of one to five groups and with a stored
//! effective feature set. Everything is drawn from a fixed-seed generator, so every run
//! decides over the same directory.
//!
//! One decision is what a sign-in asks of the core for one user:
//! `RolloutIndex::desired(user, domain, groups)` and `route_sign_in(…)`. It is measured twice:
//! with the index built once ("index prebuilt") and with `RolloutIndex::new(policies)` built for
//! every decision, as the server does today for every request ("index built per decision").

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cutover_core::routing::{Route, RoutingInput, route_sign_in};
use cutover_core::staged::{FeatureRolloutPolicy, FeatureSet, RolloutFeature, RolloutIndex};
use cutover_core::{
    ClientAppType, Domain, DomainAuthentication, DomainName, FederationConfig, Source, Timestamp,
    User, UserPrincipalName,
};
use uuid::Uuid;

use super::{PHASE_TIME_LIMIT, Phase, bar, summarize};

/// Policies in the benchmark directory: two per feature.
pub const POLICIES_PER_FEATURE: usize = 2;
/// Groups each policy targets (the most the API allows per feature).
pub const GROUPS_PER_POLICY: usize = cutover_core::staged::MAX_GROUPS_PER_FEATURE;
/// Direct groups per user: 1 to this many.
const MAX_GROUPS_PER_USER: u64 = 5;
/// Decisions a worker claims at once (keeps the shared counter off the measured path).
const BATCH: usize = 1024;
/// One decision in this many is timed on its own for p50/p99.
pub const SAMPLE_EVERY: usize = 16;
/// The fixed seed: every run decides over the same directory.
const SEED: u64 = 0x5eed_c0de_2026_1122;

/// SplitMix64: a small deterministic generator, enough to spread memberships.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform enough in `0..n` for `n` far below 2^64.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
}

/// The in-memory directory decisions are made over.
pub struct World {
    pub domain: Domain,
    pub policies: Vec<FeatureRolloutPolicy>,
    pub index: RolloutIndex,
    pub users: Vec<User>,
    /// Each user's direct groups, as the store's `groups_of_member` returns them.
    pub groups_of: Vec<Vec<Uuid>>,
    /// Each user's stored effective features.
    pub effective: Vec<FeatureSet>,
    pub groups: usize,
}

/// What the directory looks like, to print next to the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorldFacts {
    pub users: usize,
    pub groups: usize,
    pub policies: usize,
    pub groups_per_policy: usize,
    pub memberships: usize,
    /// Users whose desired set is not empty (a targeted group).
    pub desired_nonempty: usize,
    /// Users whose effective state differs from the desired one (a pending switch).
    pub pending: usize,
    /// Users a decision routes to Cutover's password page.
    pub routed_managed: usize,
}

impl World {
    /// Build the directory: `groups` group ids (at least [`GROUPS_PER_POLICY`]), ten policies,
    /// `users` synced users. Deterministic.
    pub fn build(users: usize, groups: usize) -> Self {
        assert!(groups >= GROUPS_PER_POLICY && users >= 1);
        let mut rng = SplitMix64(SEED);
        let group_ids: Vec<Uuid> = (0..groups).map(|_| rng.uuid()).collect();
        let mut policies = Vec::new();
        for feature in RolloutFeature::ALL {
            for n in 0..POLICIES_PER_FEATURE {
                let mut applies_to: Vec<Uuid> = Vec::with_capacity(GROUPS_PER_POLICY);
                while applies_to.len() < GROUPS_PER_POLICY {
                    let g = group_ids[rng.below(groups)];
                    if !applies_to.contains(&g) {
                        applies_to.push(g);
                    }
                }
                policies.push(FeatureRolloutPolicy {
                    id: rng.uuid(),
                    display_name: format!("{feature} rollout {}", n + 1),
                    description: None,
                    feature,
                    is_enabled: true,
                    is_applied_to_organization: false,
                    applies_to,
                    created_at: Timestamp(0),
                    updated_at: Timestamp(0),
                });
            }
        }
        let targeted: Vec<Uuid> = policies
            .iter()
            .flat_map(|p| p.applies_to.iter().copied())
            .collect();
        let index = RolloutIndex::new(&policies);
        let domain = Domain {
            name: DomainName::parse("routing.example").expect("a valid domain name"),
            authentication: DomainAuthentication::Federated(FederationConfig {
                identity_provider_id: Some(Uuid::from_u128(1)),
            }),
            created_at: Timestamp(0),
        };
        let mut world_users = Vec::with_capacity(users);
        let mut groups_of = Vec::with_capacity(users);
        let mut effective = Vec::with_capacity(users);
        for i in 0..users {
            let user = User {
                id: rng.uuid(),
                upn: UserPrincipalName::parse(&format!("user{i}@routing.example"))
                    .expect("a valid user principal name"),
                source: Source::Synced,
                immutable_id: Some(format!("anchor-{i}")),
                display_name: format!("User {i}"),
                mail: None,
                department: None,
                manager_id: None,
                account_enabled: true,
                break_glass: false,
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            };
            let count = 1 + rng.below(MAX_GROUPS_PER_USER as usize);
            let mut mine: Vec<Uuid> = (0..count).map(|_| group_ids[rng.below(groups)]).collect();
            // Half the users are in a targeted group, so that decisions go both ways.
            if rng.below(2) == 0 {
                mine[0] = targeted[rng.below(targeted.len())];
            }
            mine.sort_unstable();
            mine.dedup();
            let desired = index.desired(&user, Some(&domain), &mine);
            // One in ten has not signed in since their groups changed: a pending switch.
            effective.push(if rng.below(10) == 0 {
                FeatureSet::EMPTY
            } else {
                desired
            });
            world_users.push(user);
            groups_of.push(mine);
        }
        Self {
            domain,
            policies,
            index,
            users: world_users,
            groups_of,
            effective,
            groups,
        }
    }

    /// One routing decision for user `i % users`: the desired features from the user's groups
    /// and the route from the stored effective ones. `index` is the prebuilt one, or `None` to
    /// build it from the policies first (as the server does per request).
    pub fn decide(&self, i: usize, index: Option<&RolloutIndex>) -> (FeatureSet, Route) {
        let u = i % self.users.len();
        let user = &self.users[u];
        let built;
        let index = match index {
            Some(ix) => ix,
            None => {
                built = RolloutIndex::new(&self.policies);
                &built
            }
        };
        let desired = index.desired(user, Some(&self.domain), &self.groups_of[u]);
        let decision = route_sign_in(RoutingInput {
            domain: Some(&self.domain),
            user: Some(user),
            effective: self.effective[u],
            client_app_type: ClientAppType::Browser,
            domain_hint: false,
            usable_tap: false,
        });
        (desired, decision.route)
    }

    pub fn facts(&self) -> WorldFacts {
        let mut f = WorldFacts {
            users: self.users.len(),
            groups: self.groups,
            policies: self.policies.len(),
            groups_per_policy: GROUPS_PER_POLICY,
            memberships: self.groups_of.iter().map(Vec::len).sum(),
            desired_nonempty: 0,
            pending: 0,
            routed_managed: 0,
        };
        for u in 0..self.users.len() {
            let (desired, route) = self.decide(u, Some(&self.index));
            f.desired_nonempty += usize::from(!desired.is_empty());
            f.pending += usize::from(desired != self.effective[u]);
            f.routed_managed += usize::from(matches!(route, Route::Managed { .. }));
        }
        f
    }
}

/// Run `work(i)` for `i` in `0..count` on every core until all are done or the phase time
/// limit passes. Workers claim [`BATCH`] indices at a time; every `sample_every`-th call is
/// timed on its own for the percentiles (timing every call of a sub-microsecond operation
/// would add the clock's own cost to the throughput), and the throughput counts every call.
pub fn parallel_cpu_batched(
    count: usize,
    sample_every: usize,
    what: &str,
    work: impl Fn(usize) + Sync,
) -> Phase {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sample_every = sample_every.max(1);
    let next = AtomicUsize::new(0);
    let pb = bar(count, what);
    let start = Instant::now();
    let per_thread: Vec<(usize, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (next, work, pb) = (&next, &work, pb.clone());
                s.spawn(move || {
                    let (mut done, mut lat) = (0, Vec::new());
                    loop {
                        let from = next.fetch_add(BATCH, Ordering::Relaxed);
                        if from >= count || start.elapsed() >= PHASE_TIME_LIMIT {
                            break;
                        }
                        let to = (from + BATCH).min(count);
                        for i in from..to {
                            if i % sample_every == 0 {
                                let t = Instant::now();
                                work(i);
                                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            } else {
                                work(i);
                            }
                        }
                        done += to - from;
                        pb.inc((to - from) as u64);
                    }
                    (done, lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let done = per_thread.iter().map(|(d, _)| d).sum::<usize>();
    let lat = per_thread.into_iter().flat_map(|(_, l)| l).collect();
    Phase {
        done,
        per_sec: done as f64 / elapsed.as_secs_f64().max(1e-9),
        ..summarize(lat, elapsed)
    }
}

/// The median cost of one `Instant::now()` + `elapsed()` pair: included in every timed
/// decision's p50/p99, printed so that a reader can tell how much of a sub-microsecond p50 it is.
pub fn timer_overhead() -> Duration {
    let mut samples: Vec<Duration> = (0..10_001)
        .map(|_| {
            let t = Instant::now();
            black_box(&t);
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The routing phase's results.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingResult {
    pub directory: WorldFacts,
    pub note: &'static str,
    pub prebuilt: RoutingPhase,
    pub per_decision: RoutingPhase,
    /// Median cost of the per-decision timer, in µs (included in p50 and p99).
    pub timer_overhead_us: f64,
    /// One decision in this many was timed for p50 and p99; the rate counts all.
    pub sampled_one_in: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingPhase {
    pub done: usize,
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Decisions per second ÷ raw argon2id verifications per second.
    pub per_argon2id_verification: f64,
}

impl RoutingPhase {
    fn of(p: &Phase, argon_per_sec: f64) -> Self {
        Self {
            done: p.done,
            per_sec: p.per_sec,
            p50_us: p.p50_ms * 1000.0,
            p99_us: p.p99_ms * 1000.0,
            per_argon2id_verification: p.per_sec / argon_per_sec.max(1e-9),
        }
    }
}

pub const NOTE: &str = "10 policies built directly in the core, 2 per feature, all enabled (the admin API allows one per feature, and not passwordHashSync with passthroughAuthentication)";

/// Build the directory and measure both variants, `decisions` decisions each.
pub fn run(users: usize, groups: usize, decisions: usize, argon_per_sec: f64) -> RoutingResult {
    let started = Instant::now();
    let world = World::build(users, groups);
    let directory = world.facts();
    eprintln!(
        "routing: built {} users, {} groups, {} policies × {} groups in {} ms ({} memberships; {} staged-routed, {} pending a switch)",
        directory.users,
        directory.groups,
        directory.policies,
        directory.groups_per_policy,
        started.elapsed().as_millis(),
        directory.memberships,
        directory.routed_managed,
        directory.pending
    );
    let prebuilt = parallel_cpu_batched(decisions, SAMPLE_EVERY, "routing: index prebuilt", |i| {
        black_box(world.decide(black_box(i), Some(&world.index)));
    });
    let per_decision = parallel_cpu_batched(
        decisions,
        SAMPLE_EVERY,
        "routing: index built per decision",
        |i| {
            black_box(world.decide(black_box(i), None));
        },
    );
    RoutingResult {
        directory,
        note: NOTE,
        prebuilt: RoutingPhase::of(&prebuilt, argon_per_sec),
        per_decision: RoutingPhase::of(&per_decision, argon_per_sec),
        timer_overhead_us: timer_overhead().as_secs_f64() * 1e6,
        sampled_one_in: SAMPLE_EVERY,
    }
}

/// The routing rows of the printed table.
pub fn print(r: &RoutingResult) {
    let d = &r.directory;
    println!(
        "routing   staged-rollout routing in the core: {} synced users of a federated domain, {} groups,",
        d.users, d.groups
    );
    println!(
        "          {} policies × {} groups built directly (2 per feature, all enabled: the admin API allows",
        d.policies, d.groups_per_policy
    );
    println!(
        "          one per feature, and never passwordHashSync with passthroughAuthentication);"
    );
    println!(
        "          {} memberships; {} users desire a feature, {} route to the password page, {} pending a switch",
        d.memberships, d.desired_nonempty, d.routed_managed, d.pending
    );
    println!(
        "{:<9} {:<28} {:>8} {:>10} {:>9} {:>9} {:>11}",
        "", "measure", "done", "per sec", "p50 µs", "p99 µs", "ratio"
    );
    for (name, p) in [
        ("decisions, index prebuilt", &r.prebuilt),
        ("decisions, index per call", &r.per_decision),
    ] {
        println!(
            "{:<9} {:<28} {:>8} {:>10.0} {:>9.3} {:>9.3} {:>8.0} ÷ argon2id/s",
            "core", name, p.done, p.per_sec, p.p50_us, p.p99_us, p.per_argon2id_verification
        );
    }
    println!(
        "{:<9} ratio = routing decisions per argon2id verification: one decision costs {:.4} % (prebuilt)",
        "",
        100.0 / r.prebuilt.per_argon2id_verification.max(1e-9),
    );
    println!(
        "{:<9} and {:.4} % (index per call) of one verification; p50/p99 from one decision in {}",
        "",
        100.0 / r.per_decision.per_argon2id_verification.max(1e-9),
        r.sampled_one_in,
    );
    println!(
        "{:<9} timed alone (the clock's own {:.3} µs included); the rate counts every decision",
        "", r.timer_overhead_us,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_deterministic_and_shaped_as_asked() {
        let a = World::build(500, 40);
        let b = World::build(500, 40);
        assert_eq!(a.facts(), b.facts());
        assert_eq!(a.users[7].id, b.users[7].id);
        assert_eq!(a.groups_of[7], b.groups_of[7]);
        assert_eq!(a.policies.len(), 10);
        for f in RolloutFeature::ALL {
            assert_eq!(
                a.policies.iter().filter(|p| p.feature == f).count(),
                POLICIES_PER_FEATURE
            );
        }
        for p in &a.policies {
            assert!(p.is_enabled);
            let mut g = p.applies_to.clone();
            g.sort_unstable();
            g.dedup();
            assert_eq!(g.len(), GROUPS_PER_POLICY, "distinct groups per policy");
        }
        assert!(a.users.iter().all(|u| u.source == Source::Synced));
        assert!(
            a.groups_of
                .iter()
                .all(|g| (1..=MAX_GROUPS_PER_USER as usize).contains(&g.len()))
        );
        // Both kinds of decision occur, and some switches are pending.
        let f = a.facts();
        assert!(f.routed_managed > 0 && f.routed_managed < f.users, "{f:?}");
        assert!(f.pending > 0, "{f:?}");
    }

    #[test]
    fn decisions_route_by_effective_state_and_agree_whether_the_index_is_prebuilt() {
        let w = World::build(300, 10);
        for i in 0..w.users.len() {
            let prebuilt = w.decide(i, Some(&w.index));
            assert_eq!(prebuilt, w.decide(i, None));
            let staged = w.effective[i].password_route().is_some();
            assert_eq!(matches!(prebuilt.1, Route::Managed { .. }), staged);
        }
    }

    #[test]
    fn the_batched_runner_does_each_index_once() {
        let seen: Vec<AtomicUsize> = (0..3000).map(|_| AtomicUsize::new(0)).collect();
        let p = parallel_cpu_batched(2500, 16, "test", |i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(p.done, 2500);
        // Indices 0, 16, …, 2496 are timed.
        assert!(p.p50_ms >= 0.0 && p.p99_ms >= p.p50_ms);
        assert!(seen[..2500].iter().all(|n| n.load(Ordering::Relaxed) == 1));
        assert!(seen[2500..].iter().all(|n| n.load(Ordering::Relaxed) == 0));
    }
}
