//! Log lines that clients can cause, rate limited: at most one a second per kind, and the count
//! of those left out reported just before the next one that is written.
//!
//! A client decides how often the listeners and the DNS libraries under them log (a malformed
//! EDNS option makes hickory-proto warn once per packet), so without a limit a flood of packets
//! becomes a flood of log lines: disk, journald and the operator's attention, each paid per
//! packet. A *kind* is one log statement (its callsite). Limited are every event of a library
//! and those of lbns's own listeners and query path (`lbns::net`, `lbns::dns`); lbns's other
//! events (health flips, reloads, the sampled query log the operator asked for) are not.
//!
//! [`RateLimited`] wraps the event formatter of `tracing-subscriber`'s `fmt` layer, so it works
//! for text and JSON alike and costs a line that is left out nothing but a lock and a lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::Value;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::callsite::Identifier;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// At most one line of a kind per this long.
const WINDOW: Duration = Duration::from_secs(1);

/// An event formatter that writes at most one line per kind (callsite) per second for the
/// events clients can cause, and passes every other event to `inner` untouched.
#[derive(Debug)]
pub struct RateLimited<F> {
    inner: F,
    window: Duration,
    kinds: Mutex<HashMap<Identifier, Kind>>,
}

/// The state of one kind of line.
#[derive(Debug)]
struct Kind {
    /// When the last line of this kind was written.
    written: Instant,
    /// Lines left out since then.
    suppressed: u64,
}

impl<F> RateLimited<F> {
    /// Wraps `inner` (e.g. `tracing_subscriber::fmt::format()` or its `.json()`), one line
    /// per kind per second.
    pub fn new(inner: F) -> RateLimited<F> {
        RateLimited::with_window(inner, WINDOW)
    }

    /// Wraps `inner` with another window than a second (for tests).
    fn with_window(inner: F, window: Duration) -> RateLimited<F> {
        RateLimited {
            inner,
            window,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event of `meta` is written now; `Some(n)` with the number left out since
    /// the last one written, `None` to leave it out.
    fn admit(&self, meta: &'static Metadata<'static>, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match kinds.get_mut(&meta.callsite()) {
            Some(kind) if now.duration_since(kind.written) < self.window => {
                kind.suppressed += 1;
                None
            }
            Some(kind) => {
                kind.written = now;
                Some(std::mem::take(&mut kind.suppressed))
            }
            None => {
                kinds.insert(
                    meta.callsite(),
                    Kind {
                        written: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// Whether events of `target` can be caused by clients: everything from a library, and lbns's
/// listeners and query path.
pub fn client_driven(target: &str) -> bool {
    let ours = |module: &str| {
        target == module
            || target
                .strip_prefix(module)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    !ours("lbns") || ours("lbns::net") || ours("lbns::dns")
}

impl<S, N, F> FormatEvent<S, N> for RateLimited<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if !client_driven(meta.target()) {
            return self.inner.format_event(ctx, writer, event);
        }
        // Writing nothing (and returning Ok) leaves the line out: the fmt layer then writes
        // an empty buffer, which is no write at all.
        let Some(suppressed) = self.admit(meta, Instant::now()) else {
            return Ok(());
        };
        if suppressed > 0 {
            summary(suppressed, meta.target(), |summary| {
                self.inner.format_event(ctx, writer.by_ref(), summary)
            })?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// The line that reports `suppressed` lines of a kind left out, built as an event of its own
/// (target `lbns::logging`, WARN) so that it is formatted like every other line.
fn summary(
    suppressed: u64,
    kind: &str,
    write: impl FnOnce(&Event<'_>) -> fmt::Result,
) -> fmt::Result {
    static CALLSITE: tracing_core::callsite::DefaultCallsite =
        tracing_core::callsite::DefaultCallsite::new(&META);
    static META: Metadata<'static> = tracing_core::metadata! {
        name: "suppressed log lines",
        target: "lbns::logging",
        level: tracing::Level::WARN,
        fields: &["message", "suppressed", "kind"],
        callsite: &CALLSITE,
        kind: tracing_core::metadata::Kind::EVENT,
    };
    let fields = META.fields();
    let (Some(message), Some(count), Some(of)) = (
        fields.field("message"),
        fields.field("suppressed"),
        fields.field("kind"),
    ) else {
        return Ok(());
    };
    let text = format_args!("log lines like the next one were left out (at most one a second)");
    let values: [(&tracing::field::Field, Option<&dyn Value>); 3] = [
        (&message, Some(&text)),
        (&count, Some(&suppressed)),
        (&of, Some(&kind)),
    ];
    let values = fields.value_set(&values);
    write(&Event::new(&META, &values))
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn libraries_and_the_query_path_are_client_driven() {
        for target in [
            "hickory_proto::rr::rdata::opt",
            "lbns::net::tcp",
            "lbns::dns",
            "h2",
        ] {
            assert!(client_driven(target), "{target}");
        }
        for target in [
            "lbns",
            "lbns::monitor::health",
            "lbns::query",
            "lbns::network",
        ] {
            assert!(!client_driven(target), "{target}");
        }
    }

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn flood(n: usize) {
        for i in 0..n {
            tracing::warn!(target: "hickory_proto::rr::rdata::opt", i, "poorly formatted");
        }
    }

    #[test]
    fn one_line_per_kind_per_window_then_the_count() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .event_format(RateLimited::with_window(
                tracing_subscriber::fmt::format().without_time(),
                Duration::from_millis(200),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            flood(1000);
            // Another kind, and lbns's own lines, are not held back by the first.
            tracing::warn!(target: "lbns::net::udp", "other kind");
            for _ in 0..3 {
                tracing::info!(target: "lbns::monitor", "backend down");
            }
            std::thread::sleep(Duration::from_millis(250));
            flood(10);
        });
        let text = lines.text();
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(
            got,
            [
                " WARN hickory_proto::rr::rdata::opt: poorly formatted i=0",
                " WARN lbns::net::udp: other kind",
                " INFO lbns::monitor: backend down",
                " INFO lbns::monitor: backend down",
                " INFO lbns::monitor: backend down",
                " WARN lbns::logging: log lines like the next one were left out (at most one a \
                 second) suppressed=999 kind=\"hickory_proto::rr::rdata::opt\"",
                " WARN hickory_proto::rr::rdata::opt: poorly formatted i=0",
            ],
            "{text}"
        );
    }

    #[test]
    fn json_lines_carry_the_count_as_a_field() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .json()
            .event_format(RateLimited::with_window(
                tracing_subscriber::fmt::format().json().without_time(),
                Duration::from_millis(100),
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            flood(5);
            std::thread::sleep(Duration::from_millis(150));
            flood(1);
        });
        let text = lines.text();
        let got: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), 3, "{text}");
        assert_eq!(got[1]["fields"]["suppressed"], 4, "{text}");
        assert_eq!(got[1]["target"], "lbns::logging");
        assert_eq!(got[2]["fields"]["message"], "poorly formatted");
    }
}
