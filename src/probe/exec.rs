//! `kind = "exec"` (gdnsd's extmon): run a command for the backend; exit status 0 means up, and
//! the first line of its stdout may carry the backend's load.
//!
//! The command gets the backend's address (and `port`, when set) as its last arguments, or
//! wherever its arguments say `{address}` / `{port}`. It runs with stdin from /dev/null, in a
//! process group of its own, so that everything it starts can be killed with it:
//!
//! - when the command exits, whatever it left running in its group is killed (SIGKILL) before
//!   the command is reaped, so a probe never leaves processes behind;
//! - when the probe's timeout drops the run, [`KillOnDrop`] sends SIGKILL to the group.
//!
//! The command's exit is awaited by a blocking-pool thread that owns it ([`Group::wait`]): it
//! waits without reaping (`waitid(WNOWAIT)`), kills the group while the leader's pid — which is
//! the group's id — still cannot be reused, and then reaps. That thread runs to the end whether
//! or not the probe is still waiting, so a command whose probe timed out is reaped as soon as the
//! kill lands and no zombie is left. It also holds the command's slot of [`MAX_RUNNING`] until
//! then, which makes that a bound on the processes that exist, not only on the ones awaited.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{Probe, ProbeFuture, Reading, Target};

/// Most probe commands that may exist at once in the whole process. A probe waiting for one of
/// these slots is already inside its timeout; a slot is given back only once the command's
/// process has been reaped (after a timeout, as soon as the kill has landed).
pub(crate) const MAX_RUNNING: usize = 32;

/// The slots of [`MAX_RUNNING`] every exec probe draws from.
static SLOTS: Semaphore = Semaphore::const_new(MAX_RUNNING);

/// Most bytes of stdout, and of stderr, kept per run; the rest is read and dropped, so a chatty
/// command never blocks on a full pipe.
pub(crate) const MAX_OUTPUT: usize = 4096;

/// Most bytes read from a pipe after the command has exited: what it wrote before exiting, but
/// not an endless stream from a process that left its group holding the pipe.
const MAX_DRAIN: usize = 1 << 20;

/// Most characters of a command's output, or of a bad token, quoted in a detail.
const EXCERPT: usize = 100;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// A program path, or `["program", "arg", ...]` (required).
    command: Option<toml::Value>,
    /// Passed to the command after the address, or wherever an argument says `{port}`.
    port: Option<u16>,
    /// The first line of stdout is the backend's load (default false).
    load: Option<bool>,
}

/// `kind = "exec"`: up when the command exits with status 0.
pub(crate) fn build(table: &toml::Table, target: &Target<'_>) -> Result<Box<dyn Probe>, String> {
    Ok(Box::new(exec_probe(table, target)?))
}

/// The probe [`build`] boxes.
fn exec_probe(table: &toml::Table, target: &Target<'_>) -> Result<ExecProbe, String> {
    let Settings {
        command,
        port,
        load,
    } = super::settings("exec", table)?;
    let argv: Vec<String> = match command {
        None => return Err("an exec probe needs a command".to_owned()),
        Some(toml::Value::String(program)) => vec![program],
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                _ => Err(()),
            })
            .collect::<Result<_, ()>>()
            .map_err(|()| {
                "exec probe command must be a program path or an array of strings".to_owned()
            })?,
        Some(_) => {
            return Err(
                "exec probe command must be a program path or an array of strings".to_owned(),
            );
        }
    };
    let Some((program, args)) = argv.split_first().filter(|(p, _)| !p.is_empty()) else {
        return Err("exec probe command is empty".to_owned());
    };
    if program.contains('\0') || args.iter().any(|a| a.contains('\0')) {
        return Err("exec probe command contains a NUL character".to_owned());
    }
    let placeholders = args
        .iter()
        .any(|a| a.contains("{address}") || a.contains("{port}"));
    if args.iter().any(|a| a.contains("{port}")) && port.is_none() {
        return Err("exec probe command uses {port} but no port is set".to_owned());
    }
    let address = target.address.to_string();
    let port_text = port.map(|p| p.to_string()).unwrap_or_default();
    let args = if placeholders {
        args.iter()
            .map(|a| {
                a.replace("{address}", &address)
                    .replace("{port}", &port_text)
            })
            .collect()
    } else {
        let mut args = args.to_vec();
        args.push(address);
        args.extend(port.map(|p| p.to_string()));
        args
    };
    Ok(ExecProbe {
        program: program.clone(),
        args,
        load: load.unwrap_or(false),
        slots: &SLOTS,
    })
}

/// One backend's command, its arguments filled in.
#[derive(Debug)]
struct ExecProbe {
    program: String,
    args: Vec<String>,
    /// Whether stdout's first line is the load.
    load: bool,
    /// Where its slot comes from ([`SLOTS`]; tests use their own).
    slots: &'static Semaphore,
}

impl Probe for ExecProbe {
    fn run(&mut self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let name = &self.program;
            let out = execute(self)
                .await
                .map_err(|e| format!("exec {name}: {e}"))?;
            let mut detail = format!("exec {name}: exit 0");
            let load = if self.load {
                let load =
                    parse_load(&out).map_err(|why| format!("exec {name}: exit 0, but {why}"))?;
                detail.push_str(&format!(", load {load}"));
                Some(load)
            } else {
                None
            };
            Ok(Reading {
                load,
                lbcd: None,
                detail,
            })
        })
    }

    fn describe(&self) -> String {
        format!("exec {}", self.program)
    }
}

/// Runs the command once: its stdout (first [`MAX_OUTPUT`] bytes) if it exited with 0, else why
/// not (without the `exec <program>: ` prefix).
async fn execute(p: &ExecProbe) -> Result<Vec<u8>, String> {
    let permit = p.slots.acquire().await.map_err(|e| e.to_string())?;
    let mut child = Command::new(&p.program)
        .args(&p.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let group = Arc::new(Group {
        pgid: libc::pid_t::try_from(child.id()).expect("a pid fits pid_t"),
        reaped: Mutex::new(false),
    });
    // From here on the group is killed if this future is dropped, and reaped by `waiter` in any
    // case.
    let _kill = KillOnDrop(group.clone());
    let mut waiter = tokio::task::spawn_blocking({
        let group = group.clone();
        move || group.wait(child, permit)
    });
    let (mut out, mut err) = (Output::new(stdout)?, Output::new(stderr)?);
    let (mut out_buf, mut err_buf) = ([0u8; 1024], [0u8; 1024]);
    let waited = loop {
        tokio::select! {
            waited = &mut waiter => break waited,
            r = read(&mut out.pipe, &mut out_buf) => out.take(r, &out_buf),
            r = read(&mut err.pipe, &mut err_buf) => err.take(r, &err_buf),
        }
    };
    // The command has exited and its group has been killed; what it wrote is in the pipes.
    out.drain();
    err.drain();
    let status: ExitStatus = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("waiting for it: {e}")),
        Err(e) => return Err(format!("waiting for it: {e}")),
    };
    if status.code() == Some(0) {
        return Ok(out.kept);
    }
    let mut why = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    };
    // stderr's first line, or stdout's when stderr said nothing (as monitoring plugins do).
    let said = [&err.kept, &out.kept]
        .into_iter()
        .map(|bytes| first_line(bytes))
        .find(|line| !line.is_empty());
    if let Some(line) = said {
        why.push_str(&format!(": {}", excerpt(&line, EXCERPT)));
    }
    Err(why)
}

/// Reads from `pipe`, or never finishes once it is closed (the other branches decide).
async fn read(pipe: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// One of the command's output pipes and the first bytes read from it.
struct Output {
    /// Closed (None) at end of file or on a read error.
    pipe: Option<pipe::Receiver>,
    kept: Vec<u8>,
}

impl Output {
    fn new(fd: Option<OwnedFd>) -> Result<Output, String> {
        let pipe = fd
            .map(pipe::Receiver::from_owned_fd)
            .transpose()
            .map_err(|e| format!("cannot read its output: {e}"))?;
        Ok(Output {
            pipe,
            kept: Vec::new(),
        })
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT - self.kept.len();
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Takes one read's result.
    fn take(&mut self, r: std::io::Result<usize>, buf: &[u8]) {
        match r {
            Ok(n) if n > 0 => self.keep(&buf[..n]),
            _ => self.pipe = None,
        }
    }

    /// Reads what is left in the pipe without waiting for more. Plain non-blocking reads, not
    /// the reactor's: the reactor may not have seen the pipe become readable yet.
    fn drain(&mut self) {
        let Some(pipe) = self.pipe.take() else {
            return;
        };
        let Ok(fd) = pipe.into_nonblocking_fd() else {
            return;
        };
        let mut file = File::from(fd);
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAIN {
            match file.read(&mut buf) {
                Ok(n) if n > 0 => {
                    self.keep(&buf[..n]);
                    drained += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
}

/// A command's process group (its id is the command's pid) and whether the command has been
/// reaped, after which that id may name someone else's group and must not be signalled.
struct Group {
    pgid: libc::pid_t,
    reaped: Mutex<bool>,
}

impl Group {
    /// Waits for the command to exit, kills what is left of its group, reaps it and gives back
    /// its slot. Blocking: runs on the blocking pool, to the end even if nobody awaits it.
    fn wait(
        &self,
        mut child: Child,
        permit: SemaphorePermit<'static>,
    ) -> std::io::Result<ExitStatus> {
        let exited = loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` outlives the call. WNOWAIT leaves the child a zombie, so its pid
            // (the group's id) stays taken until `child.wait()` below.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break true;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break false;
            }
        };
        let mut reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if exited {
            kill_group(self.pgid);
        }
        let status = child.wait();
        *reaped = true;
        drop(reaped);
        drop(permit);
        status
    }
}

/// Kills the command's process group when dropped, unless the command has been reaped (then
/// its group has been killed already).
struct KillOnDrop(Arc<Group>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let reaped = self.0.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            kill_group(self.0.pgid);
        }
    }
}

/// SIGKILL to every process in group `pgid`.
fn kill_group(pgid: libc::pid_t) {
    // Never 0, 1 or negative: kill(0 or -1) would reach our own group or every process.
    if pgid > 1 {
        // SAFETY: kill has no memory effects; a negative pid names a process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// The first line of `bytes`, lossily decoded and trimmed.
fn first_line(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).trim().to_owned()
}

/// The load on stdout's first line: a finite, non-negative number.
fn parse_load(stdout: &[u8]) -> Result<f64, String> {
    let line = first_line(stdout);
    if line.is_empty() {
        return Err("no load on the first line of stdout".to_owned());
    }
    line.parse::<f64>()
        .ok()
        .filter(|l| l.is_finite() && *l >= 0.0)
        .ok_or_else(|| {
            format!(
                "stdout's first line {} is not a load",
                excerpt(&line, EXCERPT)
            )
        })
}

/// At most `max` characters of `text`, quoted and escaped (`{:?}`), with `…` when cut: what a
/// detail may quote of text it does not control.
pub(super) fn excerpt(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    format!("{head:?}{cut}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::LazyLock;
    use std::time::{Duration, Instant};

    use super::super::Shared;
    use super::*;

    /// One for every test probe (it holds an HTTP client, slow to build).
    static SHARED: LazyLock<Shared> = LazyLock::new(Shared::new);

    /// The exec probe `settings` (TOML) describe for the backend at `address`.
    fn probe_at(address: &str, settings: &str) -> Result<ExecProbe, String> {
        let target = Target {
            address: address.parse().unwrap(),
            timeout: Duration::from_secs(1),
            shared: &SHARED,
        };
        exec_probe(&toml::from_str(settings).unwrap(), &target)
    }

    fn probe(settings: &str) -> ExecProbe {
        probe_at("127.0.0.2", settings).unwrap_or_else(|e| panic!("{settings}: {e}"))
    }

    /// A probe running `script` with `/bin/sh -c` (the address and port follow as $0 and $1).
    fn sh(script: &str, extra: &str) -> ExecProbe {
        probe(&format!(
            "command = [\"/bin/sh\", \"-c\", {script:?}]\n{extra}"
        ))
    }

    async fn run(p: &mut ExecProbe) -> Result<Reading, String> {
        p.run().await
    }

    #[test]
    fn build_checks_the_command() {
        let err = |s: &str| probe_at("127.0.0.2", s).unwrap_err();
        assert_eq!(err(""), "an exec probe needs a command");
        assert_eq!(err("command = \"\""), "exec probe command is empty");
        assert_eq!(err("command = []"), "exec probe command is empty");
        assert_eq!(
            err("command = [\"\", \"x\"]"),
            "exec probe command is empty"
        );
        assert_eq!(
            err("command = [\"/bin/true\", 1]"),
            "exec probe command must be a program path or an array of strings"
        );
        assert_eq!(
            err("command = 5"),
            "exec probe command must be a program path or an array of strings"
        );
        assert_eq!(
            err("command = [\"/bin/check\", \"{address}:{port}\"]"),
            "exec probe command uses {port} but no port is set"
        );
        assert_eq!(
            err("command = \"/bin/true\"\nurl = \"x\""),
            "probe key `url` does not apply to kind = \"exec\""
        );
        assert!(err("command = \"/bin/true\"\nload = \"yes\"").starts_with("exec probe: "));
        // A program that does not exist (yet) is reported when it runs, not at build.
        assert!(probe_at("127.0.0.2", "command = \"/nonexistent/check\"").is_ok());
    }

    #[test]
    fn arguments_are_appended_or_filled_in() {
        let p = probe("command = \"/usr/local/bin/check\"");
        assert_eq!(
            (p.program.as_str(), p.args.clone()),
            ("/usr/local/bin/check", vec!["127.0.0.2".to_owned()])
        );
        assert_eq!(p.describe(), "exec /usr/local/bin/check");
        let p = probe("command = [\"/bin/check\", \"-v\"]\nport = 8080");
        assert_eq!(p.args, ["-v", "127.0.0.2", "8080"]);
        let p = probe_at(
            "2001:db8::1",
            "command = [\"/bin/check\", \"--url=http://[{address}]:{port}/\", \"-p{port}\"]\nport = 81",
        )
        .unwrap();
        assert_eq!(p.args, ["--url=http://[2001:db8::1]:81/", "-p81"]);
        // A placeholder anywhere means nothing is appended.
        let p = probe("command = [\"/bin/check\", \"{address}\", \"x\"]\nport = 81");
        assert_eq!(p.args, ["127.0.0.2", "x"]);
    }

    #[tokio::test]
    async fn exit_zero_is_up() {
        let r = run(&mut sh("exit 0", "")).await.unwrap();
        assert_eq!(r.detail, "exec /bin/sh: exit 0");
        assert_eq!(r.load, None);
        // Without `load`, stdout is not looked at.
        let r = run(&mut sh("echo not a number", "")).await.unwrap();
        assert_eq!((r.load, r.detail.as_str()), (None, "exec /bin/sh: exit 0"));
    }

    #[tokio::test]
    async fn the_command_sees_the_address_and_port() {
        let mut p = sh("echo \"$0 $1\" >&2; exit 3", "port = 8080");
        assert_eq!(
            run(&mut p).await.unwrap_err(),
            "exec /bin/sh: exit 3: \"127.0.0.2 8080\""
        );
    }

    #[tokio::test]
    async fn failures_say_why() {
        let mut p = sh(
            "echo out; printf 'no backend\\nsecond line\\n' >&2; exit 1",
            "",
        );
        assert_eq!(
            run(&mut p).await.unwrap_err(),
            "exec /bin/sh: exit 1: \"no backend\""
        );
        // Nothing on stderr: stdout's first line, as monitoring plugins print it.
        let mut p = sh("echo 'CRITICAL - refused'; exit 2", "");
        assert_eq!(
            run(&mut p).await.unwrap_err(),
            "exec /bin/sh: exit 2: \"CRITICAL - refused\""
        );
        let mut p = sh("exit 4", "");
        assert_eq!(run(&mut p).await.unwrap_err(), "exec /bin/sh: exit 4");
        // What the command says is escaped and cut short.
        let mut p = sh("printf 'bad\\033[31m%0300d\\n' 0 >&2; exit 1", "");
        let e = run(&mut p).await.unwrap_err();
        assert!(
            e.starts_with("exec /bin/sh: exit 1: \"bad\\u{1b}[31m000"),
            "{e}"
        );
        assert!(e.ends_with("\"…"), "{e}");
        assert!(e.len() < 160, "{e}");
        let mut p = sh("kill -TERM $$; sleep 5", "");
        assert_eq!(
            run(&mut p).await.unwrap_err(),
            "exec /bin/sh: killed by signal 15"
        );
        let mut p = probe("command = \"/nonexistent/check\"");
        assert_eq!(
            run(&mut p).await.unwrap_err(),
            "exec /nonexistent/check: cannot run: No such file or directory (os error 2)"
        );
    }

    #[tokio::test]
    async fn load_is_stdouts_first_line() {
        let r = run(&mut sh("echo ' 0.25 '; echo 7", "load = true"))
            .await
            .unwrap();
        assert_eq!(r.load, Some(0.25));
        assert_eq!(r.detail, "exec /bin/sh: exit 0, load 0.25");
        let r = run(&mut sh("printf 12", "load = true")).await.unwrap();
        assert_eq!(r.load, Some(12.0));
        for (script, why) in [
            ("echo -1", "stdout's first line \"-1\" is not a load"),
            ("echo NaN", "stdout's first line \"NaN\" is not a load"),
            ("echo high", "stdout's first line \"high\" is not a load"),
            ("true", "no load on the first line of stdout"),
            ("echo; echo 3", "no load on the first line of stdout"),
        ] {
            assert_eq!(
                run(&mut sh(script, "load = true")).await.unwrap_err(),
                format!("exec /bin/sh: exit 0, but {why}"),
                "{script}"
            );
        }
        // A failing command is down whatever it prints.
        let e = run(&mut sh("echo 1; exit 1", "load = true"))
            .await
            .unwrap_err();
        assert_eq!(e, "exec /bin/sh: exit 1: \"1\"");
    }

    /// Output far beyond what is kept is read and dropped: the command never blocks on a full
    /// pipe.
    #[tokio::test]
    async fn chatty_commands_do_not_block() {
        let mut p = sh(
            "echo 5; head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2",
            "load = true",
        );
        let r = tokio::time::timeout(Duration::from_secs(10), run(&mut p))
            .await
            .expect("finished")
            .unwrap();
        assert_eq!(r.load, Some(5.0));
    }

    /// The pids in process group `pgid` that are not zombies, from /proc.
    fn live_members(pgid: i32) -> Vec<i32> {
        let mut live = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the ')'.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields[2].parse::<i32>() == Ok(pgid) && fields[0] != "Z" {
                live.push(pid);
            }
        }
        live
    }

    /// Whether `pid` runs (exists and is not a zombie).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat[stat.rfind(')').unwrap()..].starts_with(") Z"))
    }

    fn exists(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    fn read_pid(path: &Path) -> i32 {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{}: {e} (the script did not get that far)", path.display())
        });
        text.trim().parse().unwrap()
    }

    /// A probe dropped by its timeout kills the command's whole group — the command and what it
    /// started — and the command is reaped: no zombie, and its slot comes back.
    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        static SLOTS: Semaphore = Semaphore::const_new(3);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("slow.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nd=$(dirname \"$0\")\necho $$ > \"$d/leader\"\n\
             sleep 30 &\necho $! > \"$d/grandchild\"\nwait\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut p = probe(&format!("command = {:?}", script.to_str().unwrap()));
        p.slots = &SLOTS;
        // On a loaded machine the shell might not have started its `sleep` within 200 ms; then
        // there is nothing to look at, so try again (the kill is checked the same way below).
        for attempt in 1.. {
            let started = Instant::now();
            let r = tokio::time::timeout(Duration::from_millis(200), p.run()).await;
            assert!(r.is_err(), "finished: {r:?}");
            assert!(started.elapsed() < Duration::from_secs(1));
            if dir.path().join("grandchild").exists() || attempt == 3 {
                break;
            }
        }
        let leader = read_pid(&dir.path().join("leader"));
        let grandchild = read_pid(&dir.path().join("grandchild"));
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let live = live_members(leader);
            // The leader is our child: gone means killed *and* reaped. The grandchild is
            // reparented to init when the leader dies; an init that does not reap (as in some
            // containers) leaves it a zombie, which is dead all the same.
            if !exists(leader)
                && !alive(grandchild)
                && live.is_empty()
                && SLOTS.available_permits() == 3
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a second after the timeout: leader {leader} exists: {}, live in its group: \
                 {live:?} (grandchild {grandchild}), free slots {}",
                exists(leader),
                SLOTS.available_permits()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // SAFETY: signal 0 to a group only checks that it has members.
        let group = unsafe { libc::kill(-leader, 0) };
        if group == 0 {
            // Only zombies (reparented, waiting for init) are left in it.
            assert!(live_members(leader).is_empty());
        } else {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::ESRCH)
            );
        }
    }

    /// What a command leaves running in its group when it exits is killed too.
    #[tokio::test]
    async fn leftovers_of_a_finished_command_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg");
        let mut p = sh(
            &format!(
                "sleep 30 & echo $! > {:?}; exit 0",
                pidfile.to_str().unwrap()
            ),
            "",
        );
        run(&mut p).await.unwrap();
        let bg = read_pid(&pidfile);
        let deadline = Instant::now() + Duration::from_secs(1);
        while alive(bg) {
            assert!(
                Instant::now() < deadline,
                "background sleep {bg} still runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// At most the semaphore's count of commands run at once; the others wait for a slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_is_bounded() {
        static SLOTS: Semaphore = Semaphore::const_new(2);
        let dir = tempfile::tempdir().unwrap();
        let running = dir.path().to_str().unwrap().to_owned();
        let script = format!("touch {running:?}/run.$$; sleep 0.3; rm {running:?}/run.$$");
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for _ in 0..6 {
            let mut p = sh(&script, "");
            p.slots = &SLOTS;
            tasks.spawn(async move { p.run().await });
        }
        let mut most = 0;
        while !tasks.is_empty() {
            let now = std::fs::read_dir(dir.path()).unwrap().count();
            most = most.max(now);
            while let Some(done) = tasks.try_join_next() {
                done.unwrap().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(most, 2, "commands running at once");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "six 0.3 s commands two at a time took {:?}",
            started.elapsed()
        );
        assert_eq!(SLOTS.available_permits(), 2);
    }

    /// Waiting for a slot is inside the probe's timeout: a probe that never got one times out
    /// without running its command.
    #[tokio::test]
    async fn waiting_for_a_slot_counts_against_the_timeout() {
        static SLOTS: Semaphore = Semaphore::const_new(1);
        let dir = tempfile::tempdir().unwrap();
        let mut busy = sh("sleep 1", "");
        busy.slots = &SLOTS;
        let busy = tokio::spawn(async move { busy.run().await });
        while SLOTS.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ran = dir.path().join("ran");
        let mut waiting = sh(&format!("touch {:?}", ran.to_str().unwrap()), "");
        waiting.slots = &SLOTS;
        let r = tokio::time::timeout(Duration::from_millis(200), waiting.run()).await;
        assert!(r.is_err(), "{r:?}");
        busy.await.unwrap().unwrap();
        assert!(!ran.exists(), "ran without a slot");
    }

    #[test]
    fn excerpts_are_escaped_and_short() {
        assert_eq!(excerpt("ok", 5), "\"ok\"");
        assert_eq!(excerpt("a\"b\x07c", 10), "\"a\\\"b\\u{7}c\"");
        assert_eq!(excerpt("éééééé", 3), "\"ééé\"…");
    }
}
