//! Dropping root once every socket is bound: `[server] user` / `group`.
//!
//! lbns needs root (or `CAP_NET_BIND_SERVICE`) only to bind port 53. After binding the DNS and
//! status sockets it switches to the configured user and group for good: supplementary groups
//! first, then the group, then the user (in the other order the later calls would no longer be
//! permitted). glibc applies each call to every thread of the process, so the runtime threads
//! already running drop too. Users and groups are resolved before binding, so a typo fails the
//! start before any socket is opened.

use std::ffi::{CStr, CString};
use std::io;

/// Why the switch could not be made. Every case stops the start: running with more privileges
/// than the operator asked for is not a safe fallback.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("[server] user `{0}` does not exist")]
    NoUser(String),
    #[error("[server] group `{0}` does not exist")]
    NoGroup(String),
    #[error("cannot look up {what} `{name}`: {source}")]
    Lookup {
        what: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot switch to {target}: lbns is not running as root (uid {uid}); start it as root or \
         remove [server] user and group"
    )]
    NotRoot { target: String, uid: u32 },
    #[error("cannot switch to {target}: {call} failed: {source}")]
    Switch {
        target: String,
        call: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A user from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Primary group, used when no `group` is configured.
    pub gid: u32,
}

/// A group from the group database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// Who to become: a group, and a user unless only `group` was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<User>,
    pub group: Group,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(u) => write!(
                f,
                "user {} ({}) group {} ({})",
                u.name, u.uid, self.group.name, self.group.gid
            ),
            None => write!(f, "group {} ({})", self.group.name, self.group.gid),
        }
    }
}

/// Resolves the configured names; `None` when neither is set.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Target>, PrivError> {
    let user = user.map(lookup_user).transpose()?;
    let group = match (group, &user) {
        (Some(g), _) => lookup_group(g)?,
        (None, Some(u)) => Group {
            name: group_name(u.gid).unwrap_or_else(|| u.gid.to_string()),
            gid: u.gid,
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(Target { user, group }))
}

/// Switches the whole process to `target`. A no-op when it already runs as that user and
/// group (systemd's `User=` did it); an error when it is not root and would have to change.
pub fn drop_to(target: &Target) -> Result<(), PrivError> {
    // SAFETY: get*id(2) cannot fail and touch no memory.
    let (uid, euid, gid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    let want_uid = target.user.as_ref().map(|u| u.uid);
    let user_ok = want_uid.is_none_or(|w| uid == w && euid == w);
    if user_ok && gid == target.group.gid && egid == target.group.gid {
        return Ok(());
    }
    if euid != 0 {
        return Err(PrivError::NotRoot {
            target: target.to_string(),
            uid: euid,
        });
    }
    let fail = |call| {
        let source = io::Error::last_os_error();
        PrivError::Switch {
            target: target.to_string(),
            call,
            source,
        }
    };
    let gid = target.group.gid;
    // SAFETY: plain syscalls with a valid one-element group list.
    unsafe {
        // Root's supplementary groups (often `root` and more) must not survive the switch.
        if libc::setgroups(1, &gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail("setgid"));
        }
        if let Some(uid) = want_uid
            && libc::setuid(uid) != 0
        {
            return Err(fail("setuid"));
        }
    }
    // Belt and braces: a non-root user must not be able to get root back.
    if let Some(uid) = want_uid
        && uid != 0
    {
        // SAFETY: as above; setuid(0) is expected to fail with EPERM.
        let regained = unsafe { libc::setuid(0) == 0 || libc::geteuid() != uid };
        if regained {
            return Err(PrivError::Switch {
                target: target.to_string(),
                call: "setuid (root could be regained)",
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            });
        }
    }
    tracing::info!(%target, "dropped privileges");
    Ok(())
}

/// True when running as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `name` up in the password database (files, LDAP, whatever NSS is set up with).
pub fn lookup_user(name: &str) -> Result<User, PrivError> {
    let cname = CString::new(name).map_err(|_| PrivError::NoUser(name.to_owned()))?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `pwd` is written by getpwnam_r; `buf` outlives every use of the strings it
        // points into (we copy what we need before leaving the loop).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Err(PrivError::NoUser(name.to_owned())),
            0 => {
                return Ok(User {
                    name: name.to_owned(),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                });
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // Some NSS modules report "no such entry" as an errno rather than a null result.
            libc::ENOENT | libc::ESRCH => return Err(PrivError::NoUser(name.to_owned())),
            e => {
                return Err(PrivError::Lookup {
                    what: "user",
                    name: name.to_owned(),
                    source: io::Error::from_raw_os_error(e),
                });
            }
        }
    }
}

/// Looks `name` up in the group database.
pub fn lookup_group(name: &str) -> Result<Group, PrivError> {
    let cname = CString::new(name).map_err(|_| PrivError::NoGroup(name.to_owned()))?;
    match group_entry(|grp, buf, result| {
        // SAFETY: see `group_entry`.
        unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                result,
            )
        }
    }) {
        Ok(Some((_, gid))) => Ok(Group {
            name: name.to_owned(),
            gid,
        }),
        Ok(None) => Err(PrivError::NoGroup(name.to_owned())),
        Err(source) => Err(PrivError::Lookup {
            what: "group",
            name: name.to_owned(),
            source,
        }),
    }
}

/// The name of group `gid`, for messages.
fn group_name(gid: u32) -> Option<String> {
    group_entry(|grp, buf, result| {
        // SAFETY: see `group_entry`.
        unsafe { libc::getgrgid_r(gid, grp, buf.as_mut_ptr().cast(), buf.len(), result) }
    })
    .ok()
    .flatten()
    .map(|(name, _)| name)
}

/// Runs a `getgr*_r` call with a growing buffer; the entry's name and gid, or `None` if none.
fn group_entry(
    call: impl Fn(&mut libc::group, &mut [u8], &mut *mut libc::group) -> libc::c_int,
) -> io::Result<Option<(String, u32)>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `grp` is plain data the call fills in; its strings point into `buf`, which is
        // alive while we copy the name out.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        match call(&mut grp, &mut buf, &mut result) {
            0 if result.is_null() => return Ok(None),
            0 => {
                // SAFETY: on success gr_name is a NUL-terminated string inside `buf`.
                let name = unsafe { CStr::from_ptr(grp.gr_name) }
                    .to_string_lossy()
                    .into_owned();
                return Ok(Some((name, grp.gr_gid)));
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_by_name() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_group("root").unwrap().gid, 0);
        assert_eq!(group_name(0).as_deref(), Some("root"));
        // Debian's unprivileged account; its primary group is the user's group by default.
        let t = resolve(Some("nobody"), None).unwrap().unwrap();
        let nobody = t.user.clone().unwrap();
        assert_eq!(nobody.uid, 65534);
        assert_eq!(t.group.gid, nobody.gid);
        let t = resolve(Some("nobody"), Some("root")).unwrap().unwrap();
        assert_eq!(t.group.gid, 0);
        assert_eq!(t.to_string(), "user nobody (65534) group root (0)");
        assert_eq!(resolve(None, None).unwrap(), None);
        let t = resolve(None, Some("root")).unwrap().unwrap();
        assert!(t.user.is_none());
    }

    #[test]
    fn missing_names_are_clear_errors() {
        let e = resolve(Some("no-such-user-lbns"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[server] user `no-such-user-lbns` does not exist"
        );
        let e = resolve(Some("root"), Some("no-such-group-lbns")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[server] group `no-such-group-lbns` does not exist"
        );
        assert!(matches!(
            lookup_user("nul\0byte"),
            Err(PrivError::NoUser(_))
        ));
    }

    #[test]
    fn switching_to_who_we_already_are_is_a_no_op() {
        // SAFETY: get*id(2) cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let me = Target {
            user: Some(User {
                name: "me".into(),
                uid,
                gid,
            }),
            group: Group {
                name: "me".into(),
                gid,
            },
        };
        drop_to(&me).unwrap();
    }
}
