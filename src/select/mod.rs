//! Selection: the one chain of pure stages that turns a pool's backends and their health into
//! what a query may answer — drop down/stale → order by policy → cap → all-down policy.
//!
//! Everything is computed here, when a snapshot is compiled, never per query: the result is
//! either "rotate this list" or a short cycle of precomputed orderings, so the query path picks
//! an ordering with one counter increment and allocates nothing.

use std::net::IpAddr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::domain::{AllDown, LbcdWeight, Policy, Pool, Verdict};

/// Length of the precomputed cycle for policies that are not plain rotations. 120 is divisible
/// by every weight sum up to 6 and by 8, 10, 12, so common weight ratios come out exact.
pub(crate) const CYCLE: usize = 120;

/// One backend as the stages see it: its configured part and its verdict side by side.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    address: IpAddr,
    weight: u32,
    tier: u32,
    /// Up, fresh and not drained.
    usable: bool,
    load: Option<f64>,
    lbcd: Option<LbcdWeight>,
    /// Seconds left until it can be declared down, while it is in doubt.
    ttl_cap: Option<u32>,
}

/// How a query walks the addresses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Rotation `r` answers `addrs[r % n..]` then wraps, `cap` of them.
    Rotate,
    /// Rotation `r` answers `orderings[r % len]`, each a list of indices into `addrs`, already
    /// capped.
    Cycle(Vec<Vec<u32>>),
}

/// The answer of one pool for one address family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyAnswer {
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) plan: Plan,
    pub(crate) cap: usize,
    pub(crate) ttl: u32,
    /// All down under `all_down = "servfail"`.
    pub(crate) servfail: bool,
    /// True when this is the all-down answer (for the status page and metrics).
    pub(crate) all_down: bool,
    /// The pool counter's value when this answer was compiled: rotation `r` starts the plan at
    /// `r - rotation_base`, so a fresh plan (e.g. lbnamed weights after a poll) starts at its
    /// head.
    pub(crate) rotation_base: usize,
}

impl FamilyAnswer {
    /// Number of addresses a query gets (0 = NODATA).
    pub(crate) fn len(&self) -> usize {
        match &self.plan {
            Plan::Rotate => self.addrs.len().min(self.cap),
            Plan::Cycle(o) => o.first().map_or(0, Vec::len),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The addresses for rotation `r`, in answer order. No allocation.
    pub(crate) fn addresses(&self, r: usize) -> impl Iterator<Item = IpAddr> + '_ {
        let r = r.wrapping_sub(self.rotation_base);
        let n = self.addrs.len();
        let (rotate, cycle) = match &self.plan {
            Plan::Rotate if n > 0 => (Some(r % n), None),
            Plan::Rotate => (None, None),
            Plan::Cycle(o) if !o.is_empty() => (None, Some(&o[r % o.len()])),
            Plan::Cycle(_) => (None, None),
        };
        let rotated = rotate.into_iter().flat_map(move |start| {
            self.addrs
                .iter()
                .cycle()
                .skip(start)
                .take(n.min(self.cap))
                .copied()
        });
        let cycled = cycle
            .into_iter()
            .flat_map(move |o| o.iter().map(move |&i| self.addrs[i as usize]));
        rotated.chain(cycled)
    }
}

/// The whole chain for one family of one pool, from its backends' verdicts (indexed like
/// `pool.backends`). `seed` makes random policies reproducible.
pub fn select(pool: &Pool, verdicts: &[Verdict], v6: bool, seed: u64) -> FamilyAnswer {
    let candidates: Vec<Candidate> = pool
        .backends
        .iter()
        .zip(verdicts)
        .map(|(b, v)| Candidate {
            address: b.address,
            weight: b.weight,
            tier: b.tier,
            usable: v.usable,
            load: v.load,
            lbcd: v.lbcd,
            ttl_cap: v.ttl_cap,
        })
        .collect();
    let family: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.address.is_ipv6() == v6)
        .collect();
    let up: Vec<&Candidate> = family.iter().copied().filter(|c| c.usable).collect();
    if up.is_empty() && !family.is_empty() {
        return all_down(pool, &family, v6);
    }
    let (addrs, plan) = order(&pool.policy, &up, pool.max_answers, seed);
    FamilyAnswer {
        addrs,
        plan,
        cap: pool.max_answers,
        ttl: ttl(pool, &family, &up),
        servfail: false,
        all_down: false,
        rotation_base: 0,
    }
}

/// The TTL of an answer from `up` (of `family`): the pool's, or with an adaptive TTL
/// (`failover`) no more than the seconds left for any backend in doubt, and the all-down TTL
/// while fewer than `min_up` of the family are usable (gdnsd's DYNA TTL and `up_thresh`).
fn ttl(pool: &Pool, family: &[&Candidate], up: &[&Candidate]) -> u32 {
    let Some(adaptive) = &pool.adaptive else {
        return pool.ttl;
    };
    let mut ttl = up.iter().filter_map(|c| c.ttl_cap).fold(pool.ttl, u32::min);
    if (up.len() as f64) < adaptive.min_up * family.len() as f64 {
        ttl = ttl.min(pool.all_down_ttl);
    }
    ttl
}

/// Stage 4: nothing of this family is up.
fn all_down(pool: &Pool, family: &[&Candidate], v6: bool) -> FamilyAnswer {
    let mut answer = FamilyAnswer {
        addrs: Vec::new(),
        plan: Plan::Rotate,
        cap: pool.max_answers,
        ttl: pool.all_down_ttl,
        servfail: false,
        all_down: true,
        rotation_base: 0,
    };
    match &pool.all_down {
        AllDown::ServeAll => answer.addrs = family.iter().map(|c| c.address).collect(),
        AllDown::NoData => {}
        AllDown::ServFail => answer.servfail = true,
        AllDown::Fallback(list) => {
            answer.addrs = list.iter().copied().filter(|a| a.is_ipv6() == v6).collect()
        }
    }
    answer
}

/// Stages 2 and 3: order the usable candidates by policy, capped.
fn order(policy: &Policy, up: &[&Candidate], cap: usize, seed: u64) -> (Vec<IpAddr>, Plan) {
    let addrs: Vec<IpAddr> = up.iter().map(|c| c.address).collect();
    let n = up.len();
    if n <= 1 {
        return (addrs, Plan::Rotate);
    }
    let capped = |o: Vec<u32>| -> Vec<u32> { o.into_iter().take(cap).collect() };
    let mut rng = SmallRng::seed_from_u64(seed);
    match policy {
        Policy::RoundRobin => (addrs, Plan::Rotate),
        Policy::Random => {
            let orderings = (0..CYCLE)
                .map(|_| {
                    let mut o: Vec<u32> = (0..n as u32).collect();
                    o.shuffle(&mut rng);
                    capped(o)
                })
                .collect();
            (addrs, Plan::Cycle(orderings))
        }
        Policy::LeastLoaded => {
            // Unknown load sorts last: a backend that reports nothing is not preferred.
            let key = |c: &Candidate| load_key(c).unwrap_or(f64::INFINITY);
            let mut idx: Vec<u32> = (0..n as u32).collect();
            idx.sort_by(|&a, &b| key(up[a as usize]).total_cmp(&key(up[b as usize])));
            // Groups of equal load, each rotated on its own so ties share the traffic.
            let mut groups: Vec<Vec<u32>> = Vec::new();
            for i in idx {
                match groups.last_mut() {
                    Some(g) if key(up[g[0] as usize]) == key(up[i as usize]) => g.push(i),
                    _ => groups.push(vec![i]),
                }
            }
            let len = groups.iter().map(Vec::len).max().unwrap_or(1);
            let orderings = (0..len)
                .map(|r| {
                    capped(
                        groups
                            .iter()
                            .flat_map(|g| g.iter().cycle().skip(r % g.len()).take(g.len()).copied())
                            .collect(),
                    )
                })
                .collect();
            (addrs, Plan::Cycle(orderings))
        }
        Policy::Weighted { scale_by_load } => {
            let weights: Vec<f64> = up
                .iter()
                .map(|c| {
                    let w = f64::from(c.weight);
                    match (scale_by_load, c.load) {
                        (true, Some(l)) if l.is_finite() && l >= 0.0 => w / (1.0 + l),
                        _ => w,
                    }
                })
                .collect();
            let firsts = smooth_weighted(&weights, CYCLE);
            let orderings = firsts
                .into_iter()
                .map(|first| {
                    // The rest in weighted-random order (Efraimidis–Spirakis keys).
                    let mut rest: Vec<(f64, u32)> = (0..n as u32)
                        .filter(|&i| i != first)
                        .map(|i| {
                            let u: f64 = rng.random_range(f64::EPSILON..1.0);
                            (u.powf(1.0 / weights[i as usize].max(f64::EPSILON)), i)
                        })
                        .collect();
                    // Only the first `cap - 1` of the rest are ever answered.
                    let keep = cap.saturating_sub(1).min(rest.len());
                    if keep > 0 && keep < rest.len() {
                        rest.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
                        rest.truncate(keep);
                    } else if keep == 0 {
                        rest.clear();
                    }
                    rest.sort_by(|a, b| b.0.total_cmp(&a.0));
                    capped(
                        std::iter::once(first)
                            .chain(rest.into_iter().map(|(_, i)| i))
                            .collect(),
                    )
                })
                .collect();
            (addrs, Plan::Cycle(orderings))
        }
        Policy::Priority { min_healthy } => {
            let mut tiers: Vec<u32> = up.iter().map(|c| c.tier).collect();
            tiers.sort_unstable();
            tiers.dedup();
            let mut active = Vec::new();
            for t in tiers {
                let members: Vec<IpAddr> = up
                    .iter()
                    .filter(|c| c.tier == t)
                    .map(|c| c.address)
                    .collect();
                let enough = members.len() >= *min_healthy;
                active.extend(members);
                if enough {
                    break;
                }
            }
            (active, Plan::Rotate)
        }
        Policy::Best => {
            // lbnamed: answer the single best host; after each answer its weight grows by its
            // increment, so between polls answers spread in proportion to spare capacity.
            let mut w: Vec<f64> = up
                .iter()
                .map(|c| match (c.lbcd, c.load) {
                    (Some(w), _) => f64::from(w.weight),
                    (None, Some(l)) => l * 100.0,
                    (None, None) => 0.0,
                })
                .collect();
            let inc: Vec<f64> = up
                .iter()
                .map(|c| c.lbcd.map_or(1.0, |w| f64::from(w.increment.max(1))))
                .collect();
            let orderings = (0..CYCLE)
                .map(|_| {
                    let best = (0..n).min_by(|&a, &b| w[a].total_cmp(&w[b])).unwrap_or(0);
                    w[best] += inc[best];
                    vec![best as u32]
                })
                .collect();
            (addrs, Plan::Cycle(orderings))
        }
    }
}

/// The load a least-loaded policy orders by: lbcd's weight when the probe is lbcd, else the
/// reported load.
fn load_key(c: &Candidate) -> Option<f64> {
    c.lbcd.map(|w| f64::from(w.weight)).or(c.load)
}

/// Smooth weighted round robin (as in nginx): a deterministic sequence of `len` picks in which
/// each index appears in proportion to its weight, evenly interleaved.
fn smooth_weighted(weights: &[f64], len: usize) -> Vec<u32> {
    let total: f64 = weights.iter().sum();
    let mut current = vec![0.0f64; weights.len()];
    (0..len)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += w;
            }
            let best = (0..weights.len())
                .max_by(|&a, &b| current[a].total_cmp(&current[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            current[best] -= total;
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests;
