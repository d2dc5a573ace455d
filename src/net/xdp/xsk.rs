//! One AF_XDP socket: its UMEM (the frames it shares with the kernel) and its four rings
//! (fill, completion, RX, TX), set up with raw `setsockopt`/`mmap` as in
//! Documentation/networking/af_xdp.rst.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Socket, Type};

/// Frame size: one page, so a frame never straddles one (aligned mode).
pub(crate) const FRAME: usize = 4096;
/// Frames in the UMEM: half for the fill ring, the rest for replies in flight.
const FRAMES: usize = 2048;
/// Entries per ring (a power of two).
pub(crate) const RING: u32 = 1024;

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised option of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

/// A mapped ring: producer and consumer indexes the kernel shares, and the entries.
struct Ring {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    entries: *mut u8,
}

impl Ring {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, entry: usize, pgoff: u64) -> io::Result<Ring> {
        let map_len = off.desc as usize + RING as usize * entry;
        // SAFETY: mapping the ring the kernel allocated for this socket at its page offset.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map.cast::<u8>();
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie inside the mapping.
        unsafe {
            Ok(Ring {
                map,
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                entries: base.add(off.desc as usize),
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping, which lives as long as `self`.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    /// Entry `i` (already masked) as a `T`.
    ///
    /// # Safety
    /// `T` must be the ring's entry type.
    unsafe fn entry<T>(&self, i: u32) -> *mut T {
        // SAFETY: `i < RING`, within the mapped entries (caller's contract for `T`).
        unsafe { self.entries.cast::<T>().add((i & (RING - 1)) as usize) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// An AF_XDP socket bound to one queue of one interface, with its own UMEM.
pub(crate) struct Xsk {
    fd: OwnedFd,
    umem: *mut u8,
    fill: Ring,
    completion: Ring,
    rx: Ring,
    tx: Ring,
    /// Frames owned by user space, not in any ring.
    free: Vec<u64>,
}

// SAFETY: the raw pointers are into mappings owned by this value; one thread uses it at a time.
unsafe impl Send for Xsk {}

impl Xsk {
    /// Creates the socket and binds it to `queue` of `ifindex` (zero-copy if the driver can,
    /// copy mode otherwise).
    pub(crate) fn open(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        let fd: OwnedFd = Socket::new(Domain::from(libc::AF_XDP), Type::RAW, None)?.into();
        let raw = fd.as_raw_fd();
        let umem_len = FRAME * FRAMES;
        // SAFETY: an anonymous private mapping; freed in Drop.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = umem.cast::<u8>();
        let unmap = |e| {
            // SAFETY: the mapping made above, not yet handed to an `Xsk`.
            unsafe { libc::munmap(umem.cast(), umem_len) };
            e
        };
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let setup = || -> io::Result<(Ring, Ring, Ring, Ring)> {
            setsockopt(raw, libc::XDP_UMEM_REG, &reg)?;
            setsockopt(raw, libc::XDP_UMEM_FILL_RING, &RING)?;
            setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &RING)?;
            setsockopt(raw, libc::XDP_RX_RING, &RING)?;
            setsockopt(raw, libc::XDP_TX_RING, &RING)?;
            // SAFETY: all-zero is a valid xdp_mmap_offsets; the kernel fills it.
            let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
            // SAFETY: `off` and `len` are live and sized for the call.
            check(unsafe {
                libc::getsockopt(
                    raw,
                    libc::SOL_XDP,
                    libc::XDP_MMAP_OFFSETS,
                    (&raw mut off).cast(),
                    &raw mut len,
                )
            })?;
            let desc = std::mem::size_of::<libc::xdp_desc>();
            let fill = Ring::map(raw, &off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
            let completion = Ring::map(raw, &off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
            let rx = Ring::map(raw, &off.rx, desc, libc::XDP_PGOFF_RX_RING as u64)?;
            let tx = Ring::map(raw, &off.tx, desc, libc::XDP_PGOFF_TX_RING as u64)?;
            let addr = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: 0,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // SAFETY: a valid sockaddr_xdp of the size passed.
            check(unsafe {
                libc::bind(
                    raw,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            })?;
            Ok((fill, completion, rx, tx))
        };
        let (fill, completion, rx, tx) = setup().map_err(unmap)?;
        let mut xsk = Xsk {
            fd,
            umem,
            fill,
            completion,
            rx,
            tx,
            free: (0..FRAMES as u64).map(|i| i * FRAME as u64).collect(),
        };
        xsk.refill();
        Ok(xsk)
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Takes back frames whose replies were sent, and gives free frames to the fill ring.
    pub(crate) fn refill(&mut self) {
        let cons = self.completion.consumer().load(Ordering::Relaxed);
        let prod = self.completion.producer().load(Ordering::Acquire);
        for i in cons..prod {
            // SAFETY: completion entries are u64 frame addresses.
            let addr = unsafe { *self.completion.entry::<u64>(i) };
            self.free.push(addr & !(FRAME as u64 - 1));
        }
        self.completion.consumer().store(prod, Ordering::Release);

        let prod = self.fill.producer().load(Ordering::Relaxed);
        let cons = self.fill.consumer().load(Ordering::Acquire);
        let room = RING - prod.wrapping_sub(cons);
        let n = room.min(self.free.len() as u32);
        for i in 0..n {
            let addr = self.free.pop().expect("counted");
            // SAFETY: fill entries are u64 frame addresses.
            unsafe { *self.fill.entry::<u64>(prod.wrapping_add(i)) = addr };
        }
        self.fill
            .producer()
            .store(prod.wrapping_add(n), Ordering::Release);
    }

    /// Received frames not yet taken: (first index, count).
    pub(crate) fn received(&self) -> (u32, u32) {
        let cons = self.rx.consumer().load(Ordering::Relaxed);
        let prod = self.rx.producer().load(Ordering::Acquire);
        (cons, prod.wrapping_sub(cons))
    }

    /// The frame of received descriptor `i`: its address in the UMEM and its bytes, with room
    /// to grow to the end of the frame (for the reply).
    pub(crate) fn rx_frame(&mut self, i: u32) -> (u64, usize, &mut [u8]) {
        // SAFETY: RX entries are xdp_desc.
        let desc = unsafe { *self.rx.entry::<libc::xdp_desc>(i) };
        let start = desc.addr as usize;
        let room = FRAME - start % FRAME;
        // SAFETY: the kernel hands us `addr..addr+len` inside one frame of our UMEM; the frame
        // is ours until we give it back (fill or TX ring).
        let buf = unsafe { std::slice::from_raw_parts_mut(self.umem.add(start), room) };
        (desc.addr, desc.len as usize, buf)
    }

    /// Marks received descriptors up to `end` (exclusive) as taken.
    pub(crate) fn release_rx(&mut self, end: u32) {
        self.rx.consumer().store(end, Ordering::Release);
    }

    /// Gives a frame straight back (nothing to send).
    pub(crate) fn recycle(&mut self, addr: u64) {
        self.free.push(addr & !(FRAME as u64 - 1));
    }

    /// Queues `len` bytes at `addr` for sending; `false` if the TX ring is full (the frame is
    /// recycled: that reply is dropped, as a full socket buffer would drop it).
    pub(crate) fn send(&mut self, addr: u64, len: usize) -> bool {
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let cons = self.tx.consumer().load(Ordering::Acquire);
        if prod.wrapping_sub(cons) >= RING {
            self.recycle(addr);
            return false;
        }
        // SAFETY: TX entries are xdp_desc.
        unsafe {
            *self.tx.entry::<libc::xdp_desc>(prod) = libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            };
        }
        self.tx
            .producer()
            .store(prod.wrapping_add(1), Ordering::Release);
        true
    }

    /// Tells the kernel to transmit what is queued (copy mode sends within this call).
    pub(crate) fn kick(&self) {
        // SAFETY: sendto with no data on our socket is the documented TX wakeup.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }

    /// Datagrams the kernel dropped for this socket since it was opened, before lbns could take
    /// them: no free frame in the fill ring, RX ring full, or otherwise (XDP_STATISTICS).
    pub(crate) fn dropped(&self) -> u64 {
        // SAFETY: all-zero is a valid xdp_statistics; the kernel fills it.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and sized for the call.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if r < 0 {
            return 0;
        }
        // rx_dropped counts every datagram the socket could not take; rx_ring_full and
        // rx_fill_ring_empty_descs say why, and are included in it.
        st.rx_dropped
    }

    /// Whether replies are still queued for the kernel.
    pub(crate) fn tx_pending(&self) -> bool {
        self.tx.producer().load(Ordering::Relaxed) != self.tx.consumer().load(Ordering::Acquire)
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: the UMEM mapped in `open`; the rings unmap themselves and the socket closes
        // after this (field order), and the kernel holds its own pin on the pages.
        unsafe { libc::munmap(self.umem.cast(), FRAME * FRAMES) };
    }
}
