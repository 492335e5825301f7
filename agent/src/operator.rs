//! What an operator set by hand and the agent keeps across restarts: the
//! drained backends and the groups handed over (`vipx-agent drain`,
//! `vipx-agent handover`), in a small JSON file (`[node] state_file`).
//!
//! The file is rewritten whole at each change (a temporary file, fsync,
//! rename), so a crash leaves the old state or the new one; one that
//! cannot be read is set aside with a warning rather than stop the agent.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A group handed over by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// When it was asked, milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// When it ends by itself (`None`: at `--undo`).
    pub until_unix_ms: Option<u64>,
}

/// The operator's settings, as the state file keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorState {
    /// Backends drained by hand.
    #[serde(default)]
    pub drained: BTreeSet<SocketAddr>,
    /// Groups handed over by hand, by name.
    #[serde(default)]
    pub held: BTreeMap<String, Hold>,
}

#[derive(Debug, Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a vipx state file ({source}); set aside as {aside}")]
    Corrupt {
        path: PathBuf,
        aside: PathBuf,
        source: serde_json::Error,
    },
}

impl OperatorState {
    /// Reads `path`; a missing file is an empty state. A file that is not
    /// one is renamed `*.corrupt` (the error says so) and the state starts
    /// empty.
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StateFileError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| {
            let aside = path.with_extension("corrupt");
            let _ = std::fs::rename(path, &aside);
            StateFileError::Corrupt {
                path: path.to_owned(),
                aside,
                source,
            }
        })
    }

    /// Writes the state to `path` atomically (the directory is created).
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let io = |source| StateFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let text = serde_json::to_string_pretty(self).expect("the state serialises");
        file.write_all(text.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Holds `group` from `now_ms`, for `hold` (`None`: until undone).
    pub fn hold(&mut self, group: &str, now_ms: u64, hold: Option<Duration>) {
        let until_unix_ms =
            hold.map(|d| now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        self.held.insert(
            group.to_owned(),
            Hold {
                since_unix_ms: now_ms,
                until_unix_ms,
            },
        );
    }

    /// Takes out the holds that ended by `now_ms`, and returns their groups.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let ended: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.until_unix_ms.is_some_and(|until| until <= now_ms))
            .map(|(g, _)| g.clone())
            .collect();
        for group in &ended {
            self.held.remove(group);
        }
        ended
    }

    /// When the next hold ends by itself.
    pub fn next_expiry(&self) -> Option<u64> {
        self.held.values().filter_map(|h| h.until_unix_ms).min()
    }
}

/// `POST /api/v1/handover`: hand `group` (every group this node is
/// MASTER of, when absent) to the best backup, or undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverRequest {
    #[serde(default)]
    pub group: Option<String>,
    /// End the handover: the group's priority applies again.
    #[serde(default)]
    pub undo: bool,
    /// How long the node stays BACKUP (absent: `[node] handover_hold`,
    /// else until undone).
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

/// What a handover did to one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverGroup {
    pub group: String,
    /// Whether the group is now held BACKUP.
    pub held: bool,
    /// Whether this node was its MASTER (and handed the VIPs over).
    pub was_master: bool,
    /// When the hold ends by itself.
    pub until_unix_ms: Option<u64>,
}

/// Why a handover was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HandoverError {
    #[error("no group {0}")]
    NoSuchGroup(String),
    #[error(
        "group {0} is static: its configured state holds, there is nothing to hand over (edit the config and reload)"
    )]
    Static(String),
    #[error("this node is MASTER of no group: nothing to hand over")]
    NotMaster,
    #[error("no group is handed over: nothing to undo")]
    NotHeld,
    #[error("the agent is stopping")]
    Stopping,
}

/// A handover asked through the API, for the daemon that runs the groups.
pub struct HandoverCall {
    pub request: HandoverRequest,
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<HandoverGroup>, HandoverError>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("vipx-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }

    #[test]
    fn the_state_survives_a_save_and_a_load() {
        let dir = dir("roundtrip");
        let path = dir.0.join("sub/state.json");
        assert_eq!(
            OperatorState::load(&path).expect("a missing file is no error"),
            OperatorState::default()
        );
        let mut state = OperatorState::default();
        state.drained.insert("10.0.1.10:6432".parse().unwrap());
        state.hold("pg", 1_000, Some(Duration::from_secs(60)));
        state.hold("web", 2_000, None);
        state.save(&path).expect("saved");
        let back = OperatorState::load(&path).expect("loaded");
        assert_eq!(back, state);
        assert_eq!(back.held["pg"].until_unix_ms, Some(61_000));
        assert!(
            !path.with_extension("tmp").exists(),
            "no temporary file left"
        );
    }

    #[test]
    fn holds_end_at_their_time_and_not_before() {
        let mut state = OperatorState::default();
        state.hold("pg", 1_000, Some(Duration::from_secs(10)));
        state.hold("web", 1_000, None);
        assert_eq!(state.next_expiry(), Some(11_000));
        assert!(state.expire(10_999).is_empty(), "not yet");
        assert_eq!(state.expire(11_000), ["pg"]);
        assert_eq!(state.next_expiry(), None, "web waits for --undo");
        assert!(state.held.contains_key("web"));
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_named() {
        let dir = dir("corrupt");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = OperatorState::load(&path).expect_err("refused").to_string();
        assert!(
            err.contains("state.json") && err.contains("state.corrupt"),
            "{err}"
        );
        assert!(dir.0.join("state.corrupt").exists(), "kept for a look");
        assert_eq!(
            OperatorState::load(&path).expect("then empty"),
            OperatorState::default()
        );
    }
}
