//! `kind = "file"` (gdnsd's extfile): another system writes each backend's state, and
//! optionally its load, to a file that lbns re-reads when it changes.
//!
//! The file has one backend per line, `<key> <state> [load]`: `state` is `up` or `down` (any
//! case), `load` a non-negative number; `#` starts a comment, blank lines are ignored, and when
//! a key appears on several lines the last one counts. A key that is an IP address matches
//! however it is spelt (`2001:DB8:0::1` is `2001:db8::1`).
//!
//! Every probe run `stat`s the file; it is read and parsed again only when its (device, inode,
//! size, mtime) changed. All backends reading one path share one [`Source`], so a thousand
//! backends on one file parse it once per change, and while one run re-reads it the others wait
//! for that result. The read and the parse run on the blocking pool and finish (and are kept)
//! even if the probe that started them timed out.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use super::exec::excerpt;
use super::{Probe, ProbeFuture, Reading, Target};

/// Largest state file read; a larger one is an error (its contents are never shown).
pub(crate) const MAX_FILE: u64 = 16 << 20;

/// Most characters of a bad token quoted in a detail.
const EXCERPT: usize = 40;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The state file (required; relative to lbns's working directory).
    path: Option<String>,
    /// This backend's name in the file (default: its address).
    key: Option<String>,
}

/// `kind = "file"`: up when the state file says `up` for this backend.
pub(crate) fn build(table: &toml::Table, target: &Target<'_>) -> Result<Box<dyn Probe>, String> {
    let Settings { path, key } = super::settings("file", table)?;
    let path = path
        .filter(|p| !p.is_empty())
        .ok_or("a file probe needs a path")?;
    if path.contains('\0') {
        return Err("file probe path contains a NUL character".to_owned());
    }
    let key = match key {
        None => target.address.to_string(),
        Some(k) if k.is_empty() => return Err("file probe key is empty".to_owned()),
        Some(k) if k.contains(char::is_whitespace) || k.contains('#') => {
            return Err(format!(
                "file probe key {} cannot appear in the file (it has a space or #)",
                excerpt(&k, EXCERPT)
            ));
        }
        Some(k) => normalize(&k),
    };
    Ok(Box::new(FileProbe {
        source: Source::shared(Path::new(&path)),
        key,
    }))
}

/// One backend's view of a state file.
struct FileProbe {
    source: Arc<Source>,
    /// The backend's name in the file.
    key: String,
}

impl Probe for FileProbe {
    fn run(&mut self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let path = self.source.path.display();
            let parsed = self
                .source
                .get()
                .await
                .map_err(|e| format!("file {path}: {e}"))?;
            let key = &self.key;
            match parsed.as_ref() {
                Err(e) => Err(format!("file {path}: {e}")),
                Ok(entries) => match entries.get(key) {
                    None => Err(format!("file {path}: no line for {key}")),
                    Some(Err(e)) => Err(format!("file {path}: {e}")),
                    Some(Ok(Entry {
                        up: false, line, ..
                    })) => Err(format!("file {path}: {key} down (line {line})")),
                    Some(Ok(Entry { load, .. })) => Ok(Reading {
                        load: *load,
                        lbcd: None,
                        detail: match load {
                            Some(l) => format!("file {path}: {key} up, load {l}"),
                            None => format!("file {path}: {key} up"),
                        },
                    }),
                },
            }
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.source.path.display())
    }
}

/// What identifies one version of the file: a change to any of these means it is read again.
/// Writing a new file and renaming it over the old one always changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// One line's word on one backend.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    up: bool,
    load: Option<f64>,
    /// 1-based, for the detail.
    line: usize,
}

/// A parsed file: each key's entry, or why its (last) line is bad. `Err` for the whole file
/// when it could not be read (too large, not a regular file, an I/O error).
type Parsed = Result<HashMap<String, Result<Entry, String>>, String>;

/// One state file, shared by every backend that reads it.
struct Source {
    path: PathBuf,
    /// The last parse and the version of the file it came from.
    current: Mutex<Option<(Stamp, Arc<Parsed>)>>,
    /// Held by the one run re-reading the file (until the read is done, even if that run was
    /// dropped); the others wait for it and take its result.
    loading: Arc<tokio::sync::Mutex<()>>,
    /// How many times the file was read and parsed.
    parses: AtomicUsize,
}

/// Every path some probe reads, to its [`Source`]. Weak: a source goes when its last probe does
/// (a reload that drops the path frees its parse).
static SOURCES: LazyLock<Mutex<HashMap<PathBuf, Weak<Source>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Source {
    /// The source for `path`, shared with every other probe of the same path.
    fn shared(path: &Path) -> Arc<Source> {
        let mut sources = SOURCES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(source) = sources.get(path).and_then(Weak::upgrade) {
            return source;
        }
        sources.retain(|_, s| s.strong_count() > 0);
        let source = Arc::new(Source {
            path: path.to_owned(),
            current: Mutex::new(None),
            loading: Arc::new(tokio::sync::Mutex::new(())),
            parses: AtomicUsize::new(0),
        });
        sources.insert(path.to_owned(), Arc::downgrade(&source));
        source
    }

    /// The parse of the file as it is now, read again if it changed.
    async fn get(self: &Arc<Self>) -> Result<Arc<Parsed>, String> {
        let stamp = self.stamp()?;
        if let Some(parsed) = self.cached(stamp) {
            return Ok(parsed);
        }
        let turn = self.loading.clone().lock_owned().await;
        // Whoever had the turn before may have read this very version.
        let stamp = self.stamp()?;
        if let Some(parsed) = self.cached(stamp) {
            return Ok(parsed);
        }
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = source.load();
            drop(turn);
            parsed
        })
        .await
        .map_err(|e| format!("reading it: {e}"))
    }

    /// The file's current version, by `stat` (following symlinks).
    fn stamp(&self) -> Result<Stamp, String> {
        std::fs::metadata(&self.path)
            .map(|m| Stamp::of(&m))
            .map_err(|e| format!("cannot read: {e}"))
    }

    fn cached(&self, stamp: Stamp) -> Option<Arc<Parsed>> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match &*current {
            Some((s, parsed)) if *s == stamp => Some(parsed.clone()),
            _ => None,
        }
    }

    /// Reads and parses the file and keeps the result (errors too, so a file too large is not
    /// read again until it changes). Blocking.
    fn load(&self) -> Arc<Parsed> {
        self.parses.fetch_add(1, Ordering::Relaxed);
        let (stamp, parsed) = match read(&self.path) {
            Ok((stamp, text)) => (Some(stamp), Ok(parse(&text))),
            Err((stamp, e)) => (stamp, Err(e)),
        };
        let parsed = Arc::new(parsed);
        if let Some(stamp) = stamp {
            *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((stamp, parsed.clone()));
        }
        parsed
    }
}

/// The file's text and the version it was read from: `fstat` before reading, so any write that
/// lands during the read changes the stamp and the next run reads the file again.
fn read(path: &Path) -> Result<(Stamp, String), (Option<Stamp>, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| (None, format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| (None, format!("cannot read: {e}")))?;
    let stamp = Stamp::of(&meta);
    if !meta.is_file() {
        return Err((Some(stamp), "not a regular file".to_owned()));
    }
    if meta.len() > MAX_FILE {
        return Err((Some(stamp), too_large(meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (Some(stamp), format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err((Some(stamp), too_large(bytes.len() as u64)));
    }
    Ok((stamp, String::from_utf8_lossy(&bytes).into_owned()))
}

fn too_large(size: u64) -> String {
    format!(
        "{size} bytes, more than the {} MiB a state file may have",
        MAX_FILE >> 20
    )
}

/// Each key's entry; a bad line is kept as the reason, for its key only.
fn parse(text: &str) -> HashMap<String, Result<Entry, String>> {
    let mut entries = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else {
            continue;
        };
        let entry = parse_line(i + 1, words.collect());
        entries.insert(normalize(key), entry);
    }
    entries
}

/// The words after the key on line `n`.
fn parse_line(n: usize, words: Vec<&str>) -> Result<Entry, String> {
    let (state, load, rest) = match words.as_slice() {
        [] => return Err(format!("line {n}: no state after the key")),
        [state] => (*state, None, None),
        [state, load] => (*state, Some(*load), None),
        [state, load, extra, ..] => (*state, Some(*load), Some(*extra)),
    };
    let up = if state.eq_ignore_ascii_case("up") {
        true
    } else if state.eq_ignore_ascii_case("down") {
        false
    } else {
        return Err(format!(
            "line {n}: state {} is not up or down",
            excerpt(state, EXCERPT)
        ));
    };
    if let Some(extra) = rest {
        return Err(format!(
            "line {n}: unexpected {} after the load",
            excerpt(extra, EXCERPT)
        ));
    }
    let load = match load {
        None => None,
        Some(text) => Some(
            text.parse::<f64>()
                .ok()
                .filter(|l| l.is_finite() && *l >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "line {n}: load {} is not a non-negative number",
                        excerpt(text, EXCERPT)
                    )
                })?,
        ),
    };
    Ok(Entry { up, load, line: n })
}

/// A key as looked up: an IP address in its canonical text, anything else as written.
fn normalize(key: &str) -> String {
    match key.parse::<IpAddr>() {
        Ok(a) => a.to_string(),
        Err(_) => key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Shared;
    use super::*;

    /// One for every test probe (it holds an HTTP client, slow to build).
    static SHARED: LazyLock<Shared> = LazyLock::new(Shared::new);

    /// A file probe for the backend at `address` reading `path`, with `extra` settings.
    fn probe_at(address: &str, path: &Path, extra: &str) -> Result<Box<dyn Probe>, String> {
        let target = Target {
            address: address.parse().unwrap(),
            timeout: Duration::from_secs(1),
            shared: &SHARED,
        };
        let settings = format!("path = {:?}\n{extra}", path.to_str().unwrap());
        build(&toml::from_str(&settings).unwrap(), &target)
    }

    fn probe(address: &str, path: &Path) -> Box<dyn Probe> {
        probe_at(address, path, "").unwrap()
    }

    /// How many times `source`'s file was parsed. Tests hold their source for the whole test:
    /// once its last holder is gone a path's count starts again.
    fn parses(source: &Source) -> usize {
        source.parses.load(Ordering::Relaxed)
    }

    /// A fresh directory and the path of `states` in it.
    fn dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("states");
        (dir, path)
    }

    #[test]
    fn build_checks_the_keys() {
        let target = Target {
            address: [127, 0, 0, 2].into(),
            timeout: Duration::from_secs(1),
            shared: &SHARED,
        };
        let err = |s: &str| build(&toml::from_str(s).unwrap(), &target).err().unwrap();
        assert_eq!(err(""), "a file probe needs a path");
        assert_eq!(err("path = \"\""), "a file probe needs a path");
        assert_eq!(err("path = \"/s\"\nkey = \"\""), "file probe key is empty");
        assert_eq!(
            err("path = \"/s\"\nkey = \"web 1\""),
            "file probe key \"web 1\" cannot appear in the file (it has a space or #)"
        );
        assert_eq!(
            err("path = \"/s\"\nport = 80"),
            "probe key `port` does not apply to kind = \"file\""
        );
        let p = build(&toml::from_str("path = \"/run/states\"").unwrap(), &target).unwrap();
        assert_eq!(p.describe(), "file /run/states");
    }

    #[tokio::test]
    async fn states_loads_and_comments() {
        let (_dir, path) = dir();
        let source = Source::shared(&path);
        std::fs::write(
            &path,
            "# written by the cluster manager\n\
             \n\
             127.0.0.2 up\n\
             127.0.0.3\tDOWN\n\
             \x20 127.0.0.4   Up 0.5   # draining soon\n\
             web5 up 12\n\
             2001:DB8:0::1 UP\n",
        )
        .unwrap();
        let p = path.display();
        let r = probe("127.0.0.2", &path).run().await.unwrap();
        assert_eq!(
            (r.load, r.detail),
            (None, format!("file {p}: 127.0.0.2 up"))
        );
        assert_eq!(
            probe("127.0.0.3", &path).run().await.unwrap_err(),
            format!("file {p}: 127.0.0.3 down (line 4)")
        );
        let r = probe("127.0.0.4", &path).run().await.unwrap();
        assert_eq!(
            (r.load, r.detail),
            (Some(0.5), format!("file {p}: 127.0.0.4 up, load 0.5"))
        );
        let r = probe_at("127.0.0.5", &path, "key = \"web5\"")
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(r.load, Some(12.0));
        // An address matches however either side spells it.
        assert!(probe("2001:db8::1", &path).run().await.is_ok());
        assert!(
            probe_at("127.0.0.9", &path, "key = \"2001:db8:0:0::1\"")
                .unwrap()
                .run()
                .await
                .is_ok()
        );
        assert_eq!(
            probe("127.0.0.9", &path).run().await.unwrap_err(),
            format!("file {p}: no line for 127.0.0.9")
        );
        assert_eq!(parses(&source), 1, "one parse for every backend");
    }

    #[tokio::test]
    async fn the_last_line_of_a_key_counts() {
        let (_dir, path) = dir();
        std::fs::write(
            &path,
            "127.0.0.2 up\n127.0.0.2 down\n127.0.0.3 bad\n127.0.0.3 up\n",
        )
        .unwrap();
        assert!(
            probe("127.0.0.2", &path)
                .run()
                .await
                .unwrap_err()
                .ends_with("down (line 2)")
        );
        assert!(probe("127.0.0.3", &path).run().await.is_ok());
    }

    #[tokio::test]
    async fn bad_lines_are_down_for_their_key_only() {
        let (_dir, path) = dir();
        let long = "x".repeat(500);
        std::fs::write(
            &path,
            format!(
                "127.0.0.2 maybe\n127.0.0.3 up -1\n127.0.0.4 up 1 extra\n127.0.0.5\n\
                 127.0.0.6 {long}\n127.0.0.7 up inf\n127.0.0.8 \x1b[2Jup\n127.0.0.9 up\n"
            ),
        )
        .unwrap();
        let p = path.display();
        let cases = [
            ("127.0.0.2", "line 1: state \"maybe\" is not up or down"),
            (
                "127.0.0.3",
                "line 2: load \"-1\" is not a non-negative number",
            ),
            ("127.0.0.4", "line 3: unexpected \"extra\" after the load"),
            ("127.0.0.5", "line 4: no state after the key"),
            (
                "127.0.0.6",
                &format!("line 5: state \"{}\"… is not up or down", "x".repeat(40)),
            ),
            (
                "127.0.0.7",
                "line 6: load \"inf\" is not a non-negative number",
            ),
            (
                "127.0.0.8",
                "line 7: state \"\\u{1b}[2Jup\" is not up or down",
            ),
        ];
        for (address, why) in cases {
            assert_eq!(
                probe(address, &path).run().await.unwrap_err(),
                format!("file {p}: {why}")
            );
        }
        assert!(probe("127.0.0.9", &path).run().await.is_ok());
    }

    #[tokio::test]
    async fn missing_and_unreadable_files_are_down() {
        let (dir, path) = dir();
        let mut p = probe("127.0.0.2", &path);
        assert_eq!(
            p.run().await.unwrap_err(),
            format!(
                "file {}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
        );
        std::fs::write(&path, "127.0.0.2 up\n").unwrap();
        assert!(p.run().await.is_ok(), "seen once it exists");
        let mut d = probe("127.0.0.2", dir.path());
        assert_eq!(
            d.run().await.unwrap_err(),
            format!("file {}: not a regular file", dir.path().display())
        );
    }

    #[tokio::test]
    async fn a_change_is_seen_and_an_unchanged_file_is_not_parsed_again() {
        let (dir, path) = dir();
        let source = Source::shared(&path);
        std::fs::write(&path, "127.0.0.2 up\n").unwrap();
        let mut a = probe("127.0.0.2", &path);
        let mut b = probe("127.0.0.2", &path);
        for _ in 0..5 {
            assert!(a.run().await.is_ok());
            assert!(b.run().await.is_ok());
        }
        assert_eq!(parses(&source), 1);
        // Rewritten in place.
        std::fs::write(&path, "127.0.0.2 down\n").unwrap();
        assert!(
            a.run()
                .await
                .unwrap_err()
                .ends_with("127.0.0.2 down (line 1)")
        );
        assert!(b.run().await.is_err());
        assert_eq!(parses(&source), 2);
        // Replaced by rename, same size and (possibly) the same mtime: the inode differs.
        let next = dir.path().join("states.new");
        std::fs::write(&next, "127.0.0.2 DOWN\n").unwrap();
        std::fs::write(&path, "127.0.0.2 down\n").unwrap();
        std::fs::write(&next, "127.0.0.2 UP 3\n").unwrap();
        let before = parses(&source);
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(a.run().await.unwrap().load, Some(3.0));
        assert_eq!(b.run().await.unwrap().load, Some(3.0));
        assert_eq!(parses(&source), before + 1);
    }

    /// Many backends asking at once while the file changes: one parse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_backends_share_one_parse() {
        let (_dir, path) = dir();
        let source = Source::shared(&path);
        let text: String = (0..1000)
            .map(|i| format!("10.0.{}.{} up {i}\n", i / 256, i % 256))
            .collect();
        std::fs::write(&path, text).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let mut p = probe(&format!("10.0.{}.{}", i / 256, i % 256), &path);
            tasks.spawn(async move { (i, p.run().await) });
        }
        while let Some(done) = tasks.join_next().await {
            let (i, r) = done.unwrap();
            assert_eq!(r.unwrap().load, Some(f64::from(i)));
        }
        assert_eq!(parses(&source), 1);
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_an_error_not_read() {
        let (_dir, path) = dir();
        let source = Source::shared(&path);
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE + 1).unwrap();
        let e = probe("127.0.0.2", &path).run().await.unwrap_err();
        assert_eq!(
            e,
            format!(
                "file {}: {} bytes, more than the 16 MiB a state file may have",
                path.display(),
                MAX_FILE + 1
            )
        );
        // The verdict is kept until the file changes.
        probe("127.0.0.3", &path).run().await.unwrap_err();
        assert_eq!(parses(&source), 1);
        file.set_len(MAX_FILE).unwrap();
        let e = probe("127.0.0.2", &path).run().await.unwrap_err();
        assert!(e.ends_with("no line for 127.0.0.2"), "{e}");
    }

    #[test]
    fn sources_are_shared_by_path_and_freed_with_their_probes() {
        let (_dir, path) = dir();
        let a = Source::shared(&path);
        let b = Source::shared(&path);
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let weak = SOURCES.lock().unwrap().get(&path).cloned().unwrap();
        assert_eq!(weak.strong_count(), 0);
    }
}
