//! Process limits: the open-file limit raised to its hard cap at start, the share of it that
//! probes may keep open between runs (the TCP probe keeps one per backend), and memory given
//! back to the system after a reload.

/// Open files kept back from probes: listeners, TCP clients, status connections, in-flight
/// probes and whatever the runtime needs.
const RESERVED_FILES: u64 = 1024;

/// Raises the soft open-file limit to the hard one (as Knot and the Go runtime do: the soft
/// default of 1024 is far below what a server with thousands of probed backends needs) and
/// returns the soft limit now in force.
pub(crate) fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// How many probe sockets may stay open with `nofile` open files allowed and up to
/// `tcp_clients` DNS-over-TCP connections.
pub(crate) fn probe_socket_budget(nofile: u64, tcp_clients: usize) -> usize {
    let budget = nofile.saturating_sub(RESERVED_FILES + tcp_clients as u64);
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// Gives memory the allocator holds but no longer uses back to the system. glibc's malloc keeps
/// freed memory below the top of each heap for reuse and returns only what is above the
/// highest block in use, so after a large zone is freed the process would stay as large as it
/// was at its peak; `malloc_trim` releases every free page inside the heaps too.
pub(crate) fn release_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_room_for_clients_and_listeners() {
        assert_eq!(probe_socket_budget(1024, 256), 0);
        assert_eq!(probe_socket_budget(20_000, 256), 20_000 - 1024 - 256);
        assert_eq!(probe_socket_budget(u64::MAX, 0), usize::MAX - 1024);
    }

    #[test]
    fn raise_reaches_the_hard_limit() {
        let soft = raise_nofile();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(soft, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
