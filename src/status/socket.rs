//! The control socket: a Unix stream socket (`[control] socket`) over which reload, drain and
//! undrain are asked for, in the same small HTTP as the status listener.
//!
//! Who may act is decided by the socket file's permissions, as for rndc's and knotc's sockets:
//! mode 0600 (its owner, the user lbns started as, and root), or 0660 with `[control] group`.
//! The permissions are set before the socket listens, so there is no moment when anyone else
//! could connect. A browser cannot reach a Unix socket at all, so no web page can send a
//! control request. Each request's peer (uid, pid, from `SO_PEERCRED`) goes in the log.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::serve::{Connections, Peer};

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 64;

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process (an lbns still running?) accepts on the path.
    #[error(
        "control socket {}: another process is listening on it (is lbns already running?)",
        path.display()
    )]
    InUse {
        /// `[control] socket`.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; lbns does not remove it.
    #[error(
        "control socket {}: the path exists and is not a socket; remove it or set [control] socket",
        path.display()
    )]
    NotASocket {
        /// `[control] socket`.
        path: PathBuf,
    },
    /// Creating, binding or setting permissions failed.
    #[error("control socket {}: {step}: {source}", path.display())]
    Io {
        /// `[control] socket`.
        path: PathBuf,
        /// What was being done, e.g. `cannot bind`.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A control socket bound and set to its permissions. Dropping it removes the socket file, so a
/// start that fails after binding (or a stop) leaves nothing behind.
pub(crate) struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// The socket file's identity, so that shutdown removes this file and never a newer one.
    inode: (u64, u64),
}

impl ControlSocket {
    /// The path it was bound at.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        remove(&self.path, self.inode);
    }
}

/// Binds the control socket at `path`, owned by the current user and `gid` (if given) with mode
/// 0660, else 0600. A socket file left by an lbns that is gone is replaced; one another process
/// listens on is an error, and so is any other kind of file.
pub(crate) fn bind(path: &Path, gid: Option<u32>) -> Result<ControlSocket, SocketError> {
    let io_err = |step| {
        move |source| SocketError::Io {
            path: path.to_owned(),
            step,
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(SocketError::InUse {
                        path: path.to_owned(),
                    });
                }
                // Nobody listens: left by an lbns that did not get to remove it.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(io_err("cannot remove the stale socket"))?;
                }
                Err(e) => return Err(io_err("cannot check the existing socket")(e)),
            }
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot look at the path")(e)),
    }
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
        .map_err(io_err("cannot create"))?;
    let addr = socket2::SockAddr::unix(path).map_err(io_err("not a usable socket path"))?;
    socket.bind(&addr).map_err(io_err("cannot bind"))?;
    // Permissions before listen: until then a connect is refused, so nobody slips in between.
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    let set = || -> io::Result<()> {
        if let Some(gid) = gid {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    if let Err(e) = set() {
        let _ = std::fs::remove_file(path);
        return Err(io_err("cannot set its owner and mode")(e));
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot look at the socket"))?;
    socket.listen(BACKLOG).map_err(io_err("cannot listen"))?;
    socket
        .set_nonblocking(true)
        .map_err(io_err("cannot listen"))?;
    Ok(ControlSocket {
        listener: socket.into(),
        path: path.to_owned(),
        inode: (meta.dev(), meta.ino()),
    })
}

/// Serves the control socket until `cancel` fires, then waits for requests in progress and
/// removes the socket file.
pub(crate) async fn serve(
    socket: ControlSocket,
    connections: Connections,
    cancel: CancellationToken,
) {
    let listener = socket
        .listener
        .try_clone()
        .and_then(tokio::net::UnixListener::from_std);
    match listener {
        Ok(listener) => loop {
            let stream = tokio::select! {
                () = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off briefly rather than spin.
                        tracing::warn!(error = %e, "control socket accept");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let peer = match stream.peer_cred() {
                Ok(c) => format!(
                    "uid {} pid {}",
                    c.uid(),
                    c.pid().map_or("?".to_owned(), |p| p.to_string())
                ),
                Err(_) => "unknown".to_owned(),
            };
            connections.admit(stream, Peer(peer));
        },
        Err(e) => tracing::error!(error = %e, socket = %socket.path.display(), "control socket"),
    }
    connections.drained().await;
    // Removes the socket file.
    drop(socket);
}

/// Removes the socket file if it is still the one bound (a newer lbns may have replaced it).
/// After a switch of user the directory may not be writable: then the next start replaces it.
fn remove(path: &Path, inode: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if (meta.dev(), meta.ino()) == inode => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::debug!(error = %e, socket = %path.display(), "control socket left behind");
            }
        }
        _ => {}
    }
}
