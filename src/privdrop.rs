//! Dropping root once every socket is bound: `[server] user` / `group`.
//!
//! lbns needs root (or `CAP_NET_BIND_SERVICE`) only to bind port 53. After binding the DNS and
//! status sockets it switches to the configured user and group for good: supplementary groups
//! first, then the group, then the user (in the other order the later calls would no longer be
//! permitted). glibc applies each call to every thread of the process, so the runtime threads
//! already running drop too. Users and groups are resolved before binding, so a typo fails the
//! start before any socket is opened.

use std::io;

use nix::errno::Errno;
use nix::unistd::{self, Gid, Uid};

/// Why the switch could not be made. Every case stops the start: running with more privileges
/// than the operator asked for is not a safe fallback.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// No such user in the password database; holds the name as configured.
    #[error("[server] user `{0}` does not exist")]
    NoUser(String),
    /// No such group in the group database; holds the name as configured.
    #[error("[server] group `{0}` does not exist")]
    NoGroup(String),
    /// The database lookup itself failed (NSS unreachable, permissions).
    #[error("cannot look up {what} `{name}`: {source}")]
    Lookup {
        /// `user` or `group`.
        what: &'static str,
        /// The name looked up.
        name: String,
        /// The error NSS reported.
        #[source]
        source: io::Error,
    },
    /// A switch is needed but lbns does not run as root.
    #[error(
        "cannot switch to {target}: lbns is not running as root (uid {uid}); start it as root or \
         remove [server] user and group"
    )]
    NotRoot {
        /// Who lbns was to become, e.g. `user nobody (65534) group nogroup (65534)`.
        target: String,
        /// The effective uid lbns runs as.
        uid: u32,
    },
    /// A system call of the switch failed, or root could still be regained after it.
    #[error("cannot switch to {target}: {call} failed: {source}")]
    Switch {
        /// Who lbns was to become, as in [`PrivError::NotRoot`].
        target: String,
        /// The call that failed: `setgroups`, `setgid` or `setuid`.
        call: &'static str,
        /// Its errno.
        #[source]
        source: io::Error,
    },
}

/// A user from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    /// The uid lbns switches to.
    pub uid: u32,
    /// Primary group, used when no `group` is configured.
    pub gid: u32,
}

/// A group from the group database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) gid: u32,
}

/// Who to become: a group, and a user unless only `group` was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) user: Option<User>,
    pub(crate) group: Group,
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
pub(crate) fn resolve(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Target>, PrivError> {
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
pub(crate) fn drop_to(target: &Target) -> Result<(), PrivError> {
    let (uid, euid) = (unistd::getuid().as_raw(), unistd::geteuid().as_raw());
    let (gid, egid) = (unistd::getgid().as_raw(), unistd::getegid().as_raw());
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
        move |errno: Errno| PrivError::Switch {
            target: target.to_string(),
            call,
            source: errno.into(),
        }
    };
    let gid = Gid::from_raw(target.group.gid);
    // Root's supplementary groups (often `root` and more) must not survive the switch.
    unistd::setgroups(&[gid]).map_err(fail("setgroups"))?;
    unistd::setgid(gid).map_err(fail("setgid"))?;
    if let Some(uid) = want_uid {
        unistd::setuid(Uid::from_raw(uid)).map_err(fail("setuid"))?;
    }
    // Belt and braces: a non-root user must not be able to get root back.
    if let Some(uid) = want_uid
        && uid != 0
    {
        // setuid(0) is expected to fail with EPERM.
        let regained =
            unistd::setuid(Uid::from_raw(0)).is_ok() || unistd::geteuid().as_raw() != uid;
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
    unistd::geteuid().is_root()
}

/// Looks `name` up in the password database (files, LDAP, whatever NSS is set up with).
pub fn lookup_user(name: &str) -> Result<User, PrivError> {
    match unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(User {
            name: name.to_owned(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        // A name with a NUL byte is `Ok(None)` too. Some NSS modules report "no such entry" as
        // an errno rather than a null result.
        Ok(None) | Err(Errno::ENOENT | Errno::ESRCH) => Err(PrivError::NoUser(name.to_owned())),
        Err(e) => Err(PrivError::Lookup {
            what: "user",
            name: name.to_owned(),
            source: e.into(),
        }),
    }
}

/// Looks `name` up in the group database.
pub(crate) fn lookup_group(name: &str) -> Result<Group, PrivError> {
    match unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Group {
            name: name.to_owned(),
            gid: g.gid.as_raw(),
        }),
        Ok(None) | Err(Errno::ENOENT | Errno::ESRCH) => Err(PrivError::NoGroup(name.to_owned())),
        Err(e) => Err(PrivError::Lookup {
            what: "group",
            name: name.to_owned(),
            source: e.into(),
        }),
    }
}

/// The name of group `gid`, for messages.
fn group_name(gid: u32) -> Option<String> {
    unistd::Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
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
        assert!(matches!(
            lookup_group("nul\0byte"),
            Err(PrivError::NoGroup(_))
        ));
    }

    #[test]
    fn switching_to_who_we_already_are_is_a_no_op() {
        let (uid, gid) = (unistd::geteuid().as_raw(), unistd::getegid().as_raw());
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
