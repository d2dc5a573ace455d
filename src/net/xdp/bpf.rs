//! The XDP program that steers DNS queries to lbns's AF_XDP sockets, written as eBPF
//! bytecode here (no compiler needed at build or run time), and the `bpf(2)` calls that load
//! and attach it.
//!
//! The program passes everything to the kernel except UDP to one of our listen addresses:
//! Ethernet + IPv4 without options and not a fragment, or Ethernet + IPv6 with UDP as the next
//! header. Those go to the XSKMAP entry of the receive queue, falling back to the kernel
//! (XDP_PASS) when no socket is there, so the ordinary UDP sockets answer anything the
//! program does not take.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands, map/program/attach types and the helper we call (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;

// Instruction opcodes (class | size/op | source).
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
/// 32-bit compare, so an address with the top bit set is not sign-extended.
const JNE32_K: u8 = 0x56;
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;

// Offsets in `struct xdp_md`.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE: i16 = 16;

/// One eBPF instruction: opcode, dst/src registers, offset, immediate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// A jump target, resolved when the program is finished.
#[derive(Clone, Copy, PartialEq)]
enum Label {
    Pass,
    Redirect,
    V4,
    V6,
    /// The next listen-address check.
    Next(usize),
}

/// A tiny assembler: instructions plus jumps to labels.
struct Asm {
    insns: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.op(code, dst, src, 0, imm);
    }

    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }

    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.fixups {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map(|&(_, i)| i)
                .expect("every jump target is placed");
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// A 16-bit field in network order as the program's little-endian load sees it.
fn be16(v: u16) -> i32 {
    i32::from(u16::from_le_bytes(v.to_be_bytes()))
}

/// Four address octets as the program's little-endian 32-bit load sees them.
fn le32(octets: &[u8]) -> i32 {
    i32::from_le_bytes(octets.try_into().expect("four octets"))
}

/// Creates the XSKMAP the program redirects through, one entry per receive queue.
fn create_map(queues: u32) -> Result<OwnedFd, String> {
    Attr::new()
        .u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4)
        .u32(8, 4)
        .u32(12, queues.max(1))
        .call_fd(BPF_MAP_CREATE)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => format!(
                "creating the XSKMAP: {e} (needs CAP_BPF and CAP_NET_ADMIN: start lbns as \
                 root; with [server] user it drops them once set up)"
            ),
            _ => format!("creating the XSKMAP: {e}"),
        })
}

/// Assembles the program and has the kernel verify and load it.
fn load_program(listen: &[SocketAddr], map: &OwnedFd) -> Result<OwnedFd, String> {
    let insns = program(listen, map.as_raw_fd());
    let license = c"Dual MIT/GPL";
    let load = |log: &mut [u8]| {
        let mut attr = Attr::new();
        attr.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64);
        if !log.is_empty() {
            attr.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        attr.0[48..56].copy_from_slice(b"lbns_dns");
        attr.call_fd(BPF_PROG_LOAD)
    };
    load(&mut []).map_err(|e| {
        // Again with the verifier's log, for the message.
        let mut log = vec![0u8; 1 << 16];
        let _ = load(&mut log);
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        format!(
            "loading the XDP program: {e}\n{}",
            String::from_utf8_lossy(&log[..end])
        )
    })
}

/// Assembles the steering program for `listen` (address and port; an unspecified address
/// matches any destination), redirecting through the XSKMAP `map_fd`.
fn program(listen: &[SocketAddr], map_fd: RawFd) -> Vec<Insn> {
    let mut a = Asm {
        insns: Vec::new(),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    let (v4, v6): (Vec<&SocketAddr>, Vec<&SocketAddr>) = listen.iter().partition(|s| s.is_ipv4());
    // r6 = ctx; r2 = data; r3 = data_end.
    a.op(MOV64_X, 6, 1, 0, 0);
    a.op(LDX_W, 2, 6, MD_DATA, 0);
    a.op(LDX_W, 3, 6, MD_DATA_END, 0);
    // Ethernet + IPv4 + UDP must be there.
    a.op(MOV64_X, 4, 2, 0, 0);
    a.op(ADD64_K, 4, 0, 0, 14 + 20 + 8);
    a.jump(JGT_X, 4, 3, 0, Label::Pass);
    a.op(LDX_H, 5, 2, 12, 0);
    if !v4.is_empty() {
        a.jump(JEQ_K, 5, 0, be16(0x0800), Label::V4);
    }
    if !v6.is_empty() {
        a.jump(JEQ_K, 5, 0, be16(0x86dd), Label::V6);
    }
    a.jump(JA, 0, 0, 0, Label::Pass);
    let mut next = 0;
    if !v4.is_empty() {
        a.label(Label::V4);
        // Version 4, no options; UDP; not a fragment (MF clear, offset zero).
        a.op(LDX_B, 5, 2, 14, 0);
        a.jump(JNE_K, 5, 0, 0x45, Label::Pass);
        a.op(LDX_B, 5, 2, 14 + 9, 0);
        a.jump(JNE_K, 5, 0, 17, Label::Pass);
        a.op(LDX_H, 5, 2, 14 + 6, 0);
        a.op(AND64_K, 5, 0, 0, be16(0x3fff));
        a.jump(JNE_K, 5, 0, 0, Label::Pass);
        a.op(LDX_H, 7, 2, 14 + 20 + 2, 0); // UDP destination port
        a.op(LDX_W, 8, 2, 14 + 16, 0); // IPv4 destination
        for s in &v4 {
            a.jump(JNE_K, 7, 0, be16(s.port()), Label::Next(next));
            if let IpAddr::V4(ip) = s.ip()
                && !ip.is_unspecified()
            {
                a.jump(JNE32_K, 8, 0, le32(&ip.octets()), Label::Next(next));
            }
            a.jump(JA, 0, 0, 0, Label::Redirect);
            a.label(Label::Next(next));
            next += 1;
        }
        a.jump(JA, 0, 0, 0, Label::Pass);
    }
    if !v6.is_empty() {
        a.label(Label::V6);
        a.op(MOV64_X, 4, 2, 0, 0);
        a.op(ADD64_K, 4, 0, 0, 14 + 40 + 8);
        a.jump(JGT_X, 4, 3, 0, Label::Pass);
        a.op(LDX_B, 5, 2, 14 + 6, 0); // next header
        a.jump(JNE_K, 5, 0, 17, Label::Pass);
        a.op(LDX_H, 7, 2, 14 + 40 + 2, 0);
        for s in &v6 {
            a.jump(JNE_K, 7, 0, be16(s.port()), Label::Next(next));
            if let IpAddr::V6(ip) = s.ip()
                && !ip.is_unspecified()
            {
                for (k, word) in ip.octets().chunks_exact(4).enumerate() {
                    a.op(LDX_W, 5, 2, 14 + 24 + 4 * k as i16, 0);
                    a.jump(JNE32_K, 5, 0, le32(word), Label::Next(next));
                }
            }
            a.jump(JA, 0, 0, 0, Label::Redirect);
            a.label(Label::Next(next));
            next += 1;
        }
        a.jump(JA, 0, 0, 0, Label::Pass);
    }
    // return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
    a.label(Label::Redirect);
    a.op(LDX_W, 2, 6, MD_RX_QUEUE, 0);
    a.op(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd);
    a.op(0, 0, 0, 0, 0);
    a.op(MOV64_K, 3, 0, 0, XDP_PASS);
    a.op(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP);
    a.op(EXIT, 0, 0, 0, 0);
    a.label(Label::Pass);
    a.op(MOV64_K, 0, 0, 0, XDP_PASS);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// `union bpf_attr`, as far as the commands used here reach (the kernel zero-extends it).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: `self` is a zero-padded bpf_attr that outlives the call; pointers in it
        // (set by the callers) point at live buffers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of::<Attr>() as libc::c_uint,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn call_fd(&mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: these commands return a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// The loaded program, attached to an interface for as long as this lives: closing the link
/// (also when the process dies) detaches it, so no program outlives lbns.
pub(crate) struct Attached {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Attached {
    /// Loads the program for `listen` and attaches it to `ifindex` (driver mode when the
    /// driver has it, generic otherwise). `queues` sizes the socket map.
    pub(crate) fn load(
        listen: &[SocketAddr],
        ifindex: u32,
        queues: u32,
    ) -> Result<Attached, String> {
        let map = create_map(queues)?;
        let prog = load_program(listen, &map)?;
        let link = Attr::new()
            .u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .call_fd(BPF_LINK_CREATE)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    "attaching the XDP program: the interface already has one".to_owned()
                }
                _ => format!("attaching the XDP program: {e}"),
            })?;
        Ok(Attached {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Points receive queue `queue` at the AF_XDP socket `xsk`.
    pub(crate) fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        Attr::new()
            .u32(0, self.map.as_raw_fd() as u32)
            .u64(8, (&raw const key) as u64)
            .u64(16, (&raw const value) as u64)
            .call(BPF_MAP_UPDATE_ELEM)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's verifier accepts the program for every shape of listen set (needs
    /// CAP_BPF: the tests run as root, as scripts/test.sh does).
    #[test]
    fn the_kernel_verifier_accepts_the_program() {
        let map = create_map(4).expect("creating an XSKMAP (run the tests as root)");
        for listen in [
            &["127.0.0.1:53"][..],
            &["[::1]:5353"],
            &["0.0.0.0:53", "[::]:53"],
            &[
                "127.0.0.1:53",
                "192.0.2.1:53",
                "[2001:db8::1]:53",
                "[::1]:54",
            ],
        ] {
            let listen: Vec<SocketAddr> = listen.iter().map(|s| s.parse().unwrap()).collect();
            if let Err(e) = load_program(&listen, &map) {
                panic!("{listen:?}: {e}");
            }
        }
    }
}
