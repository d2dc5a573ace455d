//! The publisher: verdicts → snapshot → swap. It keeps each pool's compiled answer with the
//! verdicts it was compiled from, recompiles only the pools whose verdicts changed, and swaps
//! the new [`Snapshot`] in with one atomic swap. The snapshot swapped out goes to the
//! reclaimer, which frees it off the query path (`reclaim.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::LowerName;

use super::reclaim::Reclaimer;
use crate::domain::{Model, Pool, Verdict};
use crate::snapshot::{PoolAnswer, PoolKeys, Snapshot, SnapshotCell, pool_keys};
use crate::zones::ZoneSet;

/// What makes a pool's new verdicts worth a recompile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Only a change in who is usable (a flip, a drain, staleness) or in a TTL cap (a backend
    /// in doubt, its seconds counting down).
    Usable,
    /// Any change, loads included.
    Any,
}

/// One pool's compiled answer and the verdicts it was compiled from.
type Compiled = (Vec<Verdict>, Arc<PoolAnswer>);

/// Owns the published cell and each pool's compiled answer.
pub(crate) struct Publisher {
    cell: SnapshotCell,
    generation: u64,
    zones: Arc<ZoneSet>,
    /// Per pool of the current model: the verdicts its answer was compiled from, and it.
    compiled: Vec<Compiled>,
    /// The fast path's pool index of the current model, rebuilt only when the model changes.
    pool_keys: PoolKeys,
    /// Frees replaced snapshots once no query holds them.
    reclaimer: Reclaimer<Snapshot>,
}

impl Publisher {
    /// Compiles and publishes the first snapshot of `model`.
    pub(crate) fn new(
        model: &Model,
        zones: Arc<ZoneSet>,
        verdicts: Vec<Vec<Verdict>>,
    ) -> Publisher {
        let keys = pool_keys(model);
        let mut publisher = Publisher {
            cell: Arc::new(ArcSwap::from_pointee(Snapshot::new(
                model,
                zones.clone(),
                0,
                Vec::new(),
                keys.clone(),
            ))),
            generation: 0,
            zones,
            compiled: Vec::new(),
            pool_keys: keys,
            reclaimer: Reclaimer::new(),
        };
        publisher.replace(None, model, None, verdicts);
        publisher
    }

    /// The cell the query path reads.
    pub(crate) fn cell(&self) -> &SnapshotCell {
        &self.cell
    }

    /// The verdicts pool `pool`'s published answer was compiled from.
    pub(crate) fn published(&self, pool: usize) -> &[Verdict] {
        &self.compiled[pool].0
    }

    /// Publishes a new model (a reload; `old` is the model replaced, `None` at start). A pool
    /// the old model has too, unchanged ([`Pool::same_as`]) and with the same verdicts, keeps
    /// its compiled answer; every other pool is compiled afresh. Rotation counters of pools
    /// that keep their name carry over. `zones`: the new zones, if they changed.
    pub(crate) fn replace(
        &mut self,
        old: Option<&Model>,
        model: &Model,
        zones: Option<Arc<ZoneSet>>,
        verdicts: Vec<Vec<Verdict>>,
    ) {
        if let Some(z) = zones {
            self.zones = z;
        }
        self.pool_keys = pool_keys(model);
        self.generation += 1;
        // The old pools by name: a scan per new pool would be quadratic in pools.
        let mut previous: HashMap<LowerName, (&Pool, Compiled)> = old
            .map(|m| {
                m.pools
                    .iter()
                    .zip(std::mem::take(&mut self.compiled))
                    .map(|(p, c)| (LowerName::new(&p.name), (p, c)))
                    .collect()
            })
            .unwrap_or_default();
        self.compiled = model
            .pools
            .iter()
            .zip(verdicts)
            .enumerate()
            .map(
                |(i, (p, v))| match previous.remove(&LowerName::new(&p.name)) {
                    Some((was, (old_v, answer))) if was.same_as(p) && old_v == v => (v, answer),
                    Some((_, (_, answer))) => {
                        let counter = answer.counter.clone();
                        let answer = PoolAnswer::compile(p, i, &v, self.generation, counter);
                        (v, Arc::new(answer))
                    }
                    None => {
                        let answer = PoolAnswer::compile(p, i, &v, self.generation, Arc::default());
                        (v, Arc::new(answer))
                    }
                },
            )
            .collect();
        self.store(model);
    }

    /// Offers new verdicts for some pools of the current `model`; those that differ from what
    /// their answer was compiled from (by `change`) are recompiled, and if any was, a new
    /// snapshot is published. Returns whether one was.
    pub(crate) fn update(
        &mut self,
        model: &Model,
        pools: impl IntoIterator<Item = (usize, Vec<Verdict>)>,
        change: Change,
    ) -> bool {
        let mut changed = Vec::new();
        for (i, v) in pools {
            let old = &self.compiled[i].0;
            let differs = match change {
                Change::Any => *old != v,
                Change::Usable => old
                    .iter()
                    .zip(&v)
                    .any(|(a, b)| (a.usable, a.ttl_cap) != (b.usable, b.ttl_cap)),
            };
            if differs {
                changed.push((i, v));
            }
        }
        if changed.is_empty() {
            return false;
        }
        self.generation += 1;
        for (i, v) in changed {
            let counter = self.compiled[i].1.counter.clone();
            let answer = PoolAnswer::compile(&model.pools[i], i, &v, self.generation, counter);
            self.compiled[i] = (v, Arc::new(answer));
        }
        self.store(model);
        true
    }

    fn store(&self, model: &Model) {
        let pools = self.compiled.iter().map(|(_, a)| a.clone()).collect();
        let snapshot = Snapshot::new(
            model,
            self.zones.clone(),
            self.generation,
            pools,
            self.pool_keys.clone(),
        );
        let old = self.cell.swap(Arc::new(snapshot));
        self.reclaimer.retire(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let text = r#"
[[zone]]
origin = "example."
file = "example.zone"

[[pool]]
name = "a.example."
backends = ["127.0.0.2", "127.0.0.3"]

[[pool]]
name = "b.example."
backends = ["127.0.0.4", "127.0.0.5"]
"#;
        let config = crate::config::Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        Model::new(&config)
    }

    fn up(usable: bool, load: Option<f64>) -> Verdict {
        Verdict {
            usable,
            load,
            lbcd: None,
            ttl_cap: None,
        }
    }

    #[test]
    fn only_changed_pools_are_recompiled() {
        let m = model();
        let all = vec![vec![up(true, None); 2]; 2];
        let mut p = Publisher::new(&m, Arc::new(ZoneSet::default()), all.clone());
        let first = p.cell().load_full();
        assert_eq!(first.generation, 1);
        // The same verdicts publish nothing.
        assert!(!p.update(&m, [(0, all[0].clone()), (1, all[1].clone())], Change::Any));
        assert_eq!(p.cell().load().generation, 1);
        // A load change is not a usable change.
        let loaded = vec![up(true, Some(0.5)), up(true, None)];
        assert!(!p.update(&m, [(1, loaded.clone())], Change::Usable));
        assert!(p.update(&m, [(1, loaded)], Change::Any));
        let second = p.cell().load_full();
        assert_eq!(second.generation, 2);
        assert!(
            Arc::ptr_eq(&first.pools[0], &second.pools[0]),
            "pool a reused"
        );
        assert!(
            Arc::ptr_eq(&first.pool_keys, &second.pool_keys),
            "the name index is shared"
        );
        assert!(
            !Arc::ptr_eq(&first.pools[1], &second.pools[1]),
            "pool b recompiled"
        );
        // A backend going down changes the addresses answered.
        assert!(p.update(
            &m,
            [(0, vec![up(false, None), up(true, None)])],
            Change::Usable
        ));
        let third = p.cell().load_full();
        assert_eq!(
            third.pools[0].v4.addrs,
            ["127.0.0.3".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(
            Arc::ptr_eq(&second.pools[1], &third.pools[1]),
            "pool b reused"
        );
    }

    #[test]
    fn rotation_counters_survive_recompiles_and_reloads() {
        let m = model();
        let all = vec![vec![up(true, None); 2]; 2];
        let mut p = Publisher::new(&m, Arc::new(ZoneSet::default()), all.clone());
        p.cell().load().pools[0].next_rotation();
        p.cell().load().pools[0].next_rotation();
        p.update(
            &m,
            [(0, vec![up(false, None), up(true, None)])],
            Change::Usable,
        );
        assert_eq!(p.cell().load().pools[0].next_rotation(), 2);
        // A reload keeps the counter of a pool that keeps its name, and drops the others'.
        let mut m2 = m.clone();
        m2.pools.remove(1);
        p.replace(Some(&m), &m2, None, vec![vec![up(true, None); 2]]);
        assert_eq!(p.cell().load().pools.len(), 1);
        assert_eq!(p.cell().load().pools[0].next_rotation(), 3);
    }
}
