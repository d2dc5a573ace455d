//! Unit tests per stage, and statistical tests that weighted and least-loaded spread answers
//! as configured.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;
use crate::config::Place;
use crate::domain::Backend;

fn pool(policy: Policy, answers: usize) -> Pool {
    Pool {
        name: "p.example.".parse().unwrap(),
        ttl: 5,
        max_answers: answers,
        adaptive: None,
        backends: Vec::new(),
        policy,
        all_down: AllDown::ServeAll,
        all_down_ttl: 1,
        max_age: std::time::Duration::from_secs(5),
        place: Place {
            file: PathBuf::from("t"),
            line: 1,
            col: 1,
        },
    }
}

fn cand(last: u8, usable: bool) -> Candidate {
    Candidate {
        address: IpAddr::from([127, 0, 0, last]),
        weight: 1,
        tier: 1,
        usable,
        load: None,
        lbcd: None,
        ttl_cap: None,
    }
}

/// The chain over candidates written out whole: each becomes a backend of `pool` and its verdict.
fn select(pool: &Pool, candidates: &[Candidate], v6: bool, seed: u64) -> FamilyAnswer {
    let mut pool = pool.clone();
    pool.backends = candidates
        .iter()
        .map(|c| Backend {
            name: c.address.to_string(),
            address: c.address,
            weight: c.weight,
            tier: c.tier,
            probe: None,
        })
        .collect();
    let verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| Verdict {
            usable: c.usable,
            load: c.load,
            lbcd: c.lbcd,
            ttl_cap: c.ttl_cap,
        })
        .collect();
    super::select(&pool, &verdicts, v6, seed)
}

fn w(weight: u32, increment: u32) -> Option<LbcdWeight> {
    Some(LbcdWeight { weight, increment })
}

fn answers(f: &FamilyAnswer, r: usize) -> Vec<u8> {
    f.addresses(r)
        .map(|a| match a {
            IpAddr::V4(v) => v.octets()[3],
            IpAddr::V6(_) => 0,
        })
        .collect()
}

/// How often each address comes first over `queries` consecutive rotations.
fn first_counts(f: &FamilyAnswer, queries: usize) -> HashMap<u8, usize> {
    let mut counts = HashMap::new();
    for r in 0..queries {
        *counts.entry(answers(f, r)[0]).or_default() += 1;
    }
    counts
}

#[test]
fn drop_stage_removes_down_backends() {
    let c = [cand(2, true), cand(3, false), cand(4, true)];
    let f = select(&pool(Policy::RoundRobin, usize::MAX), &c, false, 1);
    assert_eq!(answers(&f, 0), vec![2, 4]);
    assert_eq!(answers(&f, 1), vec![4, 2]);
    assert!(!f.all_down);
}

#[test]
fn cap_stage_limits_every_policy() {
    let c: Vec<_> = (2..8).map(|i| cand(i, true)).collect();
    for policy in [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastLoaded,
        Policy::Weighted {
            scale_by_load: false,
        },
        Policy::Priority { min_healthy: 1 },
    ] {
        let f = select(&pool(policy.clone(), 2), &c, false, 7);
        for r in 0..50 {
            assert_eq!(answers(&f, r).len(), 2, "{policy:?}");
        }
    }
    let f = select(&pool(Policy::Best, usize::MAX), &c, false, 7);
    assert_eq!(answers(&f, 0).len(), 1, "best answers one host");
}

#[test]
fn all_down_policies() {
    let c = [cand(2, false), cand(3, false)];
    let mut p = pool(Policy::RoundRobin, usize::MAX);
    let f = select(&p, &c, false, 1);
    assert!(f.all_down);
    assert_eq!((answers(&f, 0), f.ttl), (vec![2, 3], 1));
    p.all_down = AllDown::NoData;
    assert!(select(&p, &c, false, 1).is_empty());
    p.all_down = AllDown::ServFail;
    assert!(select(&p, &c, false, 1).servfail);
    p.all_down = AllDown::Fallback(vec![IpAddr::from([127, 0, 0, 99]), "::1".parse().unwrap()]);
    let f = select(&p, &c, false, 1);
    assert_eq!(answers(&f, 0), vec![99]);
    // No IPv6 backends at all: plain NODATA, not the all-down answer.
    let f = select(&p, &c, true, 1);
    assert!(f.is_empty() && !f.all_down && f.ttl == 5);
}

#[test]
fn round_robin_rotates_through_every_member() {
    let c = [cand(2, true), cand(3, true), cand(4, true)];
    let f = select(&pool(Policy::RoundRobin, usize::MAX), &c, false, 1);
    let firsts: Vec<u8> = (0..3).map(|r| answers(&f, r)[0]).collect();
    assert_eq!(firsts, vec![2, 3, 4]);
}

#[test]
fn random_orders_are_permutations_and_vary() {
    let c: Vec<_> = (2..6).map(|i| cand(i, true)).collect();
    let f = select(&pool(Policy::Random, usize::MAX), &c, false, 42);
    let mut distinct = std::collections::HashSet::new();
    for r in 0..CYCLE {
        let mut a = answers(&f, r);
        distinct.insert(a.clone());
        a.sort();
        assert_eq!(a, vec![2, 3, 4, 5]);
    }
    assert!(distinct.len() > 10, "only {} orders", distinct.len());
}

#[test]
fn least_loaded_orders_by_load_and_rotates_ties() {
    let mut c: Vec<_> = (2..6).map(|i| cand(i, true)).collect();
    c[0].load = Some(3.0);
    c[1].load = Some(0.5);
    c[2].load = Some(0.5);
    c[3].load = None; // reports nothing: last
    let f = select(&pool(Policy::LeastLoaded, usize::MAX), &c, false, 1);
    assert_eq!(answers(&f, 0), vec![3, 4, 2, 5]);
    assert_eq!(answers(&f, 1), vec![4, 3, 2, 5]);
    // Statistically: the two tied least-loaded hosts share first place evenly, the others never
    // come first.
    let counts = first_counts(&f, 10_000);
    assert_eq!(counts.get(&3), Some(&5_000));
    assert_eq!(counts.get(&4), Some(&5_000));
    assert_eq!(counts.get(&2), None);
    // lbcd weight takes precedence over raw load.
    c[0].lbcd = w(10, 5);
    c[1].lbcd = w(500, 5);
    c[2].lbcd = w(300, 5);
    c[3].lbcd = w(20, 5);
    let f = select(&pool(Policy::LeastLoaded, usize::MAX), &c, false, 1);
    assert_eq!(answers(&f, 0), vec![2, 5, 4, 3]);
}

#[test]
fn weighted_spreads_first_answers_by_weight() {
    let mut c: Vec<_> = (2..5).map(|i| cand(i, true)).collect();
    c[0].weight = 1;
    c[1].weight = 2;
    c[2].weight = 3;
    let f = select(
        &pool(
            Policy::Weighted {
                scale_by_load: false,
            },
            usize::MAX,
        ),
        &c,
        false,
        9,
    );
    let n = 12_000;
    let counts = first_counts(&f, n);
    // Tolerance: the precomputed cycle makes the split exact over whole cycles; allow 1 %.
    for (addr, weight) in [(2u8, 1.0), (3, 2.0), (4, 3.0)] {
        let share = counts[&addr] as f64 / n as f64;
        assert!((share - weight / 6.0).abs() < 0.01, "{addr}: {share}");
    }
    // Every ordering still lists everyone once.
    for r in 0..CYCLE {
        let mut a = answers(&f, r);
        a.sort();
        assert_eq!(a, vec![2, 3, 4]);
    }
    // Scaled by load: weight 2 at load 1.0 counts as 1, equal to weight 1 at load 0.
    c[0].weight = 1;
    c[0].load = Some(0.0);
    c[1].weight = 2;
    c[1].load = Some(1.0);
    let f = select(
        &pool(
            Policy::Weighted {
                scale_by_load: true,
            },
            usize::MAX,
        ),
        &c[..2],
        false,
        9,
    );
    let counts = first_counts(&f, 1_200);
    assert_eq!(counts[&2], counts[&3]);
}

#[test]
fn priority_adds_the_next_tier_only_when_short() {
    let mut c: Vec<_> = (2..6).map(|i| cand(i, true)).collect();
    c[2].tier = 2;
    c[3].tier = 2;
    let p = pool(Policy::Priority { min_healthy: 2 }, usize::MAX);
    let f = select(&p, &c, false, 1);
    let mut a = answers(&f, 0);
    a.sort();
    assert_eq!(a, vec![2, 3], "tier 1 has two up: tier 2 unused");
    c[0].usable = false;
    let f = select(&p, &c, false, 1);
    let mut a = answers(&f, 0);
    a.sort();
    assert_eq!(a, vec![3, 4, 5], "tier 1 short: tier 2 added");
}

#[test]
fn best_answers_one_host_and_spreads_by_increment() {
    let mut c: Vec<_> = (2..5).map(|i| cand(i, true)).collect();
    // lbnamed: weights 100, 100, 400 with increment 100: the first two alternate until their
    // weight reaches 400, then all three share.
    c[0].lbcd = w(100, 100);
    c[1].lbcd = w(100, 100);
    c[2].lbcd = w(400, 100);
    let f = select(&pool(Policy::Best, usize::MAX), &c, false, 1);
    let seq: Vec<u8> = (0..6).map(|r| answers(&f, r)[0]).collect();
    assert_eq!(seq, vec![2, 3, 2, 3, 2, 3]);
    let next: Vec<u8> = (6..9).map(|r| answers(&f, r)[0]).collect();
    assert_eq!(next, vec![2, 3, 4], "at equal weight all three share");
}

#[test]
fn adaptive_ttl_follows_doubt_and_min_up() {
    let mut p = pool(Policy::RoundRobin, usize::MAX);
    p.ttl = 4;
    p.all_down_ttl = 1;
    let mut c: Vec<_> = (2..6).map(|i| cand(i, true)).collect();
    // Without failover the TTL is the pool's, whatever the caps say.
    c[1].ttl_cap = Some(2);
    assert_eq!(select(&p, &c, false, 1).ttl, 4);
    p.adaptive = Some(crate::domain::AdaptiveTtl {
        within: std::time::Duration::from_secs(5),
        min_up: 0.5,
    });
    // A backend in doubt: no more than its seconds left.
    assert_eq!(select(&p, &c, false, 1).ttl, 2);
    c[1].ttl_cap = Some(0);
    assert_eq!(select(&p, &c, false, 1).ttl, 0);
    c[1].ttl_cap = None;
    assert_eq!(select(&p, &c, false, 1).ttl, 4);
    // Two of four usable is not fewer than half: the steady TTL.
    c[0].usable = false;
    c[1].usable = false;
    assert_eq!(select(&p, &c, false, 1).ttl, 4);
    // One of four is: the short TTL, so a recovering pool is not pinned into caches.
    c[2].usable = false;
    let f = select(&p, &c, false, 1);
    assert_eq!((f.ttl, f.all_down), (1, false));
    // A cap of a backend that is not answered does not count.
    c[0].ttl_cap = Some(0);
    assert_eq!(select(&p, &c, false, 1).ttl, 1);
    c[2].usable = true;
    assert_eq!(select(&p, &c, false, 1).ttl, 4);
}
