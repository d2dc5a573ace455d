//! The state file: what an operator changed at run time that must survive a restart — today
//! the set of drained backends.
//!
//! JSON, small enough to read and fix by hand. Written atomically (a temporary file in the same
//! directory, fsync, rename, fsync of the directory) so a crash mid-write leaves either the old
//! or the new file, never half of one. A temporary file a killed lbns left behind is removed at
//! the next start.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Format version written in the file; a file from a newer lbns is refused, not misread.
const VERSION: u32 = 1;

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read (a missing file is an empty state).
    #[error("state file {}: cannot read: {source}", path.display())]
    Read {
        /// `[server] state_file`, joined with the config's directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not JSON of this shape, or comes from a newer lbns.
    #[error("state file {}: {message}; fix or remove it", path.display())]
    Invalid {
        /// `[server] state_file`, joined with the config's directory.
        path: PathBuf,
        /// serde_json's message, or the version found.
        message: String,
    },
    /// Writing the temporary file, syncing it or renaming it into place failed.
    #[error("state file {}: cannot write: {source}", path.display())]
    Write {
        /// `[server] state_file`, joined with the config's directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    pub(crate) version: u32,
    /// When the drained set last changed, on whichever instance of the cluster changed it
    /// (milliseconds since the Unix epoch): across peers the newest set wins.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) drain_version: u64,
    /// Backends kept out of answers by `lbns drain`, sorted so the file diffs cleanly.
    pub drained: BTreeSet<Drained>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One drained backend, by pool name (absolute, with the final dot) and backend name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drained {
    /// The pool's name, e.g. `www.cluster.example.`.
    pub pool: String,
    /// The backend's name within the pool (its address unless the config names it).
    pub backend: String,
}

impl Default for SavedState {
    fn default() -> SavedState {
        SavedState {
            version: VERSION,
            drain_version: 0,
            drained: BTreeSet::new(),
        }
    }
}

impl SavedState {
    /// The state holding `drained` (the monitor's `(pool, backend)` pairs).
    pub(crate) fn from_drained(
        drained: &HashSet<(String, String)>,
        drain_version: u64,
    ) -> SavedState {
        SavedState {
            version: VERSION,
            drain_version,
            drained: drained
                .iter()
                .map(|(pool, backend)| Drained {
                    pool: pool.clone(),
                    backend: backend.clone(),
                })
                .collect(),
        }
    }

    /// The drained set as the monitor keeps it.
    pub(crate) fn drained_set(&self) -> HashSet<(String, String)> {
        self.drained
            .iter()
            .map(|d| (d.pool.clone(), d.backend.clone()))
            .collect()
    }

    /// Reads `path`; a missing file is an empty state (the first start).
    pub(crate) fn load(path: &Path) -> Result<SavedState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SavedState::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |message: String| StateError::Invalid {
            path: path.to_owned(),
            message,
        };
        let state: SavedState = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if state.version > VERSION {
            return Err(invalid(format!(
                "version {} is newer than this lbns understands ({VERSION})",
                state.version
            )));
        }
        Ok(state)
    }

    /// Removes the temporary files (`.NAME.PID.tmp`) that writes of `path` by processes no
    /// longer running left behind: a kill between create and rename leaves one. Those of a
    /// running process (two lbns sharing a directory by mistake) are left alone. Best effort:
    /// what cannot be removed is logged.
    pub(crate) fn remove_orphans(path: &Path) {
        let (Some(name), dir) = (path.file_name(), state_dir(path)) else {
            return;
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|f| f.strip_suffix(".tmp"))
                .and_then(|pid| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() as i32 && running(pid) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    error = %e,
                    "cannot remove a temporary state file"
                ),
            }
        }
        if removed > 0 {
            tracing::info!(
                count = removed,
                dir = %dir.display(),
                "removed temporary state files left by an interrupted write"
            );
        }
    }

    /// Replaces `path` atomically with this state.
    pub(crate) fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).expect("state serializes");
        text.push('\n');
        let dir = state_dir(path);
        let name = path.file_name().ok_or_else(|| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        // In the same directory, so the rename cannot cross file systems; named after the PID
        // so two lbns processes sharing a directory by mistake do not clobber each other's temp.
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // The rename itself is durable only once the directory is synced.
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }
}

/// The directory of the state file `path` (`.` for a bare name).
fn state_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether process `pid` exists (signal 0 checks without sending anything; EPERM means it
/// exists but belongs to someone else).
fn running(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbns.state");
        assert_eq!(SavedState::load(&path).unwrap(), SavedState::default());

        let set: HashSet<(String, String)> = [
            ("www.example.".to_owned(), "web2".to_owned()),
            ("api.example.".to_owned(), "127.0.0.5".to_owned()),
        ]
        .into();
        SavedState::from_drained(&set, 0).save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        // Sorted: api before www.
        assert!(
            text.find("api.example.") < text.find("www.example."),
            "{text}"
        );
        assert_eq!(SavedState::load(&path).unwrap().drained_set(), set);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        std::fs::write(
            &path,
            "{ \"version\": 1, \"drained\": [ { \"pool\": 3 } ] }",
        )
        .unwrap();
        let err = SavedState::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("lbns.state:") && err.contains("fix or remove it"),
            "{err}"
        );
        std::fs::write(&path, "{ \"version\": 9, \"drained\": [] }").unwrap();
        let err = SavedState::load(&path).unwrap_err().to_string();
        assert!(err.contains("version 9 is newer"), "{err}");
    }

    #[test]
    fn orphaned_temporary_files_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lbns.state");
        // A PID above the kernel's maximum (4194304) is never running.
        let orphans = [".lbns.state.99999999.tmp", ".lbns.state.99999998.tmp"];
        let ours = format!(".lbns.state.{}.tmp", std::process::id());
        // PID 1 always runs: its temporary file may be mid-write.
        let kept = [
            ".lbns.state.1.tmp",
            ".other.state.99999999.tmp",
            "lbns.state.9.tmp",
        ];
        for f in orphans.iter().chain(&kept).chain([&ours.as_str()]) {
            std::fs::write(dir.path().join(f), "{").unwrap();
        }
        SavedState::remove_orphans(&path);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = kept.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn unwritable_directory_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent-lbns-dir/lbns.state");
        let err = SavedState::default().save(path).unwrap_err().to_string();
        assert!(
            err.starts_with("state file /nonexistent-lbns-dir/lbns.state: cannot write"),
            "{err}"
        );
    }
}
