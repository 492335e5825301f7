//! Two-instruction XDP programs (`return ACTION;`) loaded with the raw `bpf`
//! syscall and attached through BPF links: the lab's pass-through program on
//! bridge ports, and a tool for tests (e.g. an `XDP_TX` reflector).
//!
//! Why the lab needs them: a frame sent with `XDP_TX` (or redirected) out of
//! a veth is queued to the peer veth's NAPI ring, which exists only while the
//! peer has an XDP program (on kernel 6.18 turning GRO on for the peer is not
//! enough: the host counts `xdp_tx` as sent, and the frame vanishes).

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};

use crate::netns::in_netns;

/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union
    // bpf_attr` and its size is passed along; the kernel zero-fills the rest.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new file descriptor, now owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads an XDP program that returns `action` for every frame.
pub fn load_return_program(action: u32) -> Result<OwnedFd> {
    // r0 = action; exit
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&action.to_le_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"vipx_lab_");
    name[9] = b'0' + (action % 10) as u8;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr)
        .with_context(|| format!("loading an XDP program returning {action}"))
}

/// Attaches program `prog` to `iface` in namespace `netns` through a BPF
/// link; the program stays attached while the returned link fd is open (or
/// until the device goes away).
pub fn attach(prog: &OwnedFd, netns: &str, iface: &str) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let prog_fd = prog.as_raw_fd() as u32;
    let name = CString::new(iface)?;
    in_netns(netns, move || -> Result<OwnedFd> {
        // SAFETY: `name` is a valid C string; the lookup runs in this
        // thread's network namespace.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no device {iface}: {}", std::io::Error::last_os_error());
        }
        let mut attr = LinkCreateAttr {
            prog_fd,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: 0,
        };
        bpf(BPF_LINK_CREATE, &mut attr).with_context(|| format!("attaching XDP to {iface}"))
    })?
    .with_context(|| format!("in namespace {netns}"))
}

/// Loads and attaches a program returning `action` to `iface` in `netns`; the
/// returned link fd keeps it attached.
pub fn attach_return_program(netns: &str, iface: &str, action: u32) -> Result<OwnedFd> {
    attach(&load_return_program(action)?, netns, iface)
}
