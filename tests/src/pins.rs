//! The lab's BPF filesystem, where agents pin their XDP links and maps
//! (`[dataplane] pin_path`). `ip netns exec` gives each command a `/sys`
//! of its own, without the host's `/sys/fs/bpf`, and a bpffs an agent
//! mounts there dies with the command: so a lab mounts a bpffs instance of
//! its own at `{PIN_ROOT}/vipx-{pid}-{seq}-bpf`, which every command
//! started afterwards sees, gives each node a directory in it, and
//! unmounts it at teardown, which removes every pin left in it.
//! [`sweep_stale_pins`] unmounts those of labs whose process died.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::sweep::{lock_sweeps, owner_pid, pid_alive};

/// Where labs mount their bpffs instances.
pub const PIN_ROOT: &str = "/run/vipx-lab/bpf";

/// Mounts a fresh bpffs for lab `lab_id` and returns its directory.
pub(crate) fn mount_for(lab_id: &str) -> Result<PathBuf> {
    let dir = Path::new(PIN_ROOT).join(format!("{lab_id}-bpf"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    mount(
        Some("bpf"),
        &dir,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("mounting a BPF filesystem at {}", dir.display()))?;
    Ok(dir)
}

/// Unmounts a lab's bpffs (its pins go with it) and removes the directory.
pub(crate) fn unmount(dir: &Path) -> Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (the mount failed, or was undone).
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(errno) => return Err(errno).context(format!("unmounting {}", dir.display())),
    }
    match std::fs::remove_dir(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).context(format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Every pin under `dir`, recursively (directories are not listed, nor
/// the kernel's own files of a bpffs root, `maps.debug` and `progs.debug`:
/// names with a dot, which bpffs refuses to pins).
pub fn pins_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut pins = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains('.') {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pins.extend(pins_under(&path));
        } else {
            pins.push(path);
        }
    }
    pins.sort();
    pins
}

/// Unmounts the bpffs of every lab whose process is gone, as a killed lab
/// leaves it, with the pins in it (XDP links still attached in deleted
/// namespaces go with their interfaces already). Returns the directories
/// removed.
pub fn sweep_stale_pins() -> Result<Vec<PathBuf>> {
    let _lock = lock_sweeps()?;
    let Ok(entries) = std::fs::read_dir(PIN_ROOT) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(owner_pid)
            .is_some_and(|pid| !pid_alive(pid));
        if stale {
            let dir = entry.path();
            unmount(&dir)?;
            removed.push(dir);
        }
    }
    Ok(removed)
}

/// Writes `flows` into the flow table an agent pinned in `pin_dir` (its
/// `pin_path`), as a peer's replication would: flows it did not see
/// created.
pub fn insert_pinned_flows(
    pin_dir: &Path,
    flows: impl IntoIterator<Item = (vipx_common::FlowKey, vipx_common::Flow)>,
) -> Result<()> {
    let path = pin_dir.join(vipx_common::MAP_FLOWS);
    let data =
        aya::maps::MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
    let mut map: aya::maps::HashMap<_, vipx_common::FlowKey, vipx_common::Flow> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?;
    for (key, flow) in flows {
        map.insert(key, flow, 0)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
