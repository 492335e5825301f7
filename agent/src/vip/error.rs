//! [`VipError`] and the [`VipAction`] it happened in.

use std::fmt;
use std::io;

#[cfg(doc)]
use super::VipManager;

/// What was being done when a [`VipError`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VipAction {
    /// [`VipManager::add`] / [`VipManager::add_with`] adding the address.
    Add,
    /// [`VipManager::remove`].
    Remove,
    /// [`VipManager::present`].
    Query,
    /// Sending gratuitous ARPs or unsolicited NAs.
    Announce,
}

impl VipAction {
    /// The word between the VIP and the interface in a message.
    fn preposition(self) -> &'static str {
        match self {
            Self::Add => "to",
            Self::Remove => "from",
            Self::Query | Self::Announce => "on",
        }
    }
}

impl fmt::Display for VipAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "adding",
            Self::Remove => "removing",
            Self::Query => "looking up",
            Self::Announce => "announcing",
        })
    }
}

/// Why a VIP could not be parsed, added, removed, looked up or announced.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The VIP text or values are not valid.
    #[error("invalid VIP {input:?}: {reason}")]
    Parse {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`VipManager::new`] was called outside a tokio runtime.
    #[error("the VIP manager needs a tokio runtime to run its rtnetlink connection in")]
    NoRuntime,
    /// A socket the manager needs could not be opened.
    #[error("opening {what}: {source}")]
    Open {
        /// Which socket.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The VIP's interface does not exist in the manager's network namespace.
    #[error("{action} {vip} {} {interface}: no such interface in this network namespace", .action.preposition())]
    NoInterface {
        /// What was being done.
        action: VipAction,
        /// The VIP, "10.0.0.100/24".
        vip: String,
        /// The missing interface.
        interface: String,
    },
    /// The kernel refused, or a send failed.
    #[error("{action} {vip} {} {interface}: {source}", .action.preposition())]
    Io {
        /// What was being done.
        action: VipAction,
        /// The VIP, "10.0.0.100/24".
        vip: String,
        /// Its interface.
        interface: String,
        /// The error (a netlink error carries the kernel's errno).
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_vip_and_interface() {
        let e = VipError::Io {
            action: VipAction::Add,
            vip: "10.0.0.100/24".into(),
            interface: "eth0".into(),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert!(
            e.to_string()
                .starts_with("adding 10.0.0.100/24 to eth0: No such device"),
            "{e}"
        );
        let e = VipError::NoInterface {
            action: VipAction::Remove,
            vip: "10.0.0.100/24".into(),
            interface: "eth9".into(),
        };
        assert_eq!(
            e.to_string(),
            "removing 10.0.0.100/24 from eth9: no such interface in this network namespace"
        );
    }
}
