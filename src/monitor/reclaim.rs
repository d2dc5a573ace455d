//! The reclaimer: replaced snapshots are freed on a thread of their own, never on a query
//! thread.
//!
//! A snapshot holds the zones, and freeing a zone of a million records takes hundreds of
//! milliseconds. Whoever drops the last reference frees it, and after a swap that is usually a
//! UDP worker: its `load()` guard of the old snapshot is upgraded to a full reference by the
//! swap and dropped at the end of its batch, and every query that worker would answer next
//! waits. So the publisher hands each replaced snapshot to this thread, which holds it until
//! nobody else does (strong count 1: arc-swap counts every reader's guard by the time `swap`
//! returns, and no one can take a new reference to a snapshot no longer in the cell) and then
//! drops it here.
//!
//! After dropping, it gives the freed memory back to the system (`limits::release_memory`), at
//! most once a second: a reload that replaces a large zone would otherwise leave the process at
//! its peak size.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often held snapshots are looked at while some are still in use. Readers hold one for a
/// batch of queries, well under a millisecond.
const POLL: Duration = Duration::from_millis(5);
/// Least time between two trims of the heap: snapshots replaced for health changes are small
/// and frequent, and a trim walks every heap.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Frees what it is given once no one else holds it, on its own thread.
pub(crate) struct Reclaimer<T: Send + Sync + 'static> {
    tx: mpsc::Sender<Arc<T>>,
}

impl<T: Send + Sync + 'static> Reclaimer<T> {
    /// Starts the thread; it ends when the reclaimer is dropped, freeing what it still holds.
    pub(crate) fn new() -> Reclaimer<T> {
        let (tx, rx) = mpsc::channel::<Arc<T>>();
        std::thread::Builder::new()
            .name("lbns-reclaim".to_owned())
            .spawn(move || {
                let mut held: Vec<Arc<T>> = Vec::new();
                let mut last_trim: Option<Instant> = None;
                let mut untrimmed = false;
                loop {
                    let next = if held.is_empty() && !untrimmed {
                        rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    } else {
                        rx.recv_timeout(POLL)
                    };
                    match next {
                        Ok(old) => held.push(old),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    held.extend(rx.try_iter());
                    // Dropped here, by this thread, when it held the last reference.
                    let before = held.len();
                    held.retain(|old| Arc::strong_count(old) > 1);
                    untrimmed |= held.len() < before;
                    if untrimmed && last_trim.is_none_or(|t| t.elapsed() >= TRIM_EVERY) {
                        crate::limits::release_memory();
                        last_trim = Some(Instant::now());
                        untrimmed = false;
                    }
                }
            })
            .expect("spawning a thread");
        Reclaimer { tx }
    }

    /// Takes the last-but-one reference to `old` (the publisher's, just swapped out).
    pub(crate) fn retire(&self, old: Arc<T>) {
        // The thread only ends once `tx` is dropped, so this cannot fail; if it ever did, the
        // snapshot would be freed here, which is still correct.
        let _ = self.tx.send(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the name of the thread that drops it.
    struct Noted(Arc<Mutex<Option<String>>>);

    impl Drop for Noted {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = std::thread::current().name().map(str::to_owned);
        }
    }

    #[test]
    fn the_last_reference_is_dropped_on_the_reclaimer_thread() {
        let reclaimer = Reclaimer::new();
        let dropped_by = Arc::new(Mutex::new(None));
        let value = Arc::new(Noted(dropped_by.clone()));
        // A reader still holds it when it is retired, and lets go later.
        let reader = value.clone();
        reclaimer.retire(value);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(*dropped_by.lock().unwrap(), None, "freed while still read");
        drop(reader);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while dropped_by.lock().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "never freed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(dropped_by.lock().unwrap().as_deref(), Some("lbns-reclaim"));
    }
}
