//! A program's attachment to an interface: a fresh XDP link, pinned when
//! the data plane is, or the pinned link a previous data plane left,
//! re-pointed at this program (`bpf_link_update`), so the interface is
//! never without XDP while an agent restarts.

use std::path::{Path, PathBuf};

use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use tracing::{info, warn};
use vipx_common::PROG_MAIN;

use super::{
    error::DataplaneError,
    pins::{PinDir, unpin},
    settings::{AttachedMode, XdpModeConfig},
};

/// The main program's attachment to one interface.
pub(super) struct Attached {
    pub(super) mode: AttachedMode,
    link: Link,
}

enum Link {
    /// Pinned at `path`: it stays attached when this process goes.
    Pinned { link: FdLink, path: PathBuf },
    /// Held by the program: it goes with the data plane.
    Owned(XdpLinkId),
}

/// Where the links go: pinned in `dir` (when `pin_links`), or held by the
/// program.
#[derive(Clone, Copy)]
pub(super) struct LinkPins<'a> {
    pub(super) dir: &'a PinDir,
    /// Whether this kernel's XDP links can be pinned (5.9+).
    pub(super) pin_links: bool,
}

/// Attaches `program` (the main program) to `iface`. With `pins`, a link
/// of `iface` pinned in a mode that `mode` allows is adopted; a pin in
/// another mode, or one that cannot be adopted (its interface is gone),
/// is removed first.
pub(super) fn attach(
    program: &mut Xdp,
    pins: Option<LinkPins<'_>>,
    iface: &str,
    mode: XdpModeConfig,
) -> Result<Attached, DataplaneError> {
    if let Some(pins) = pins {
        for pin in pins
            .dir
            .link_pins()
            .into_iter()
            .filter(|p| p.iface == iface)
        {
            if mode.allows(pin.mode) {
                match adopt(program, &pin.path) {
                    Ok(link) => {
                        info!(
                            iface,
                            mode = %pin.mode,
                            "XDP link of {iface} adopted from {}: this program replaced the previous one in place ({} mode)",
                            pin.path.display(),
                            pin.mode
                        );
                        return Ok(Attached {
                            mode: pin.mode,
                            link: Link::Pinned {
                                link,
                                path: pin.path,
                            },
                        });
                    }
                    Err(err) => warn!(
                        iface,
                        "the pinned XDP link {} cannot be adopted ({err}): attaching anew",
                        pin.path.display()
                    ),
                }
            } else {
                info!(
                    iface,
                    "the pinned XDP link {} is in {} mode, which xdp_mode does not allow: attaching anew",
                    pin.path.display(),
                    pin.mode
                );
            }
            remove_link_pin(&pin.path)?;
        }
    }
    let (mode, id) = attach_program(program, PROG_MAIN, iface, mode)?;
    let link = match pins.filter(|p| p.pin_links) {
        Some(pins) => {
            let path = pins.dir.link_pin(iface, mode);
            Link::Pinned {
                link: pin(program, id, &path)?,
                path,
            }
        }
        None => Link::Owned(id),
    };
    info!(iface, %mode, "XDP program attached in {mode} mode");
    Ok(Attached { mode, link })
}

/// Detaches an attachment, and removes its pin.
pub(super) fn detach(program: &mut Xdp, attached: Attached) -> Result<(), DataplaneError> {
    match attached.link {
        Link::Pinned { link, path } => {
            unpin(&path)?;
            // The last reference: closing it detaches at once.
            drop(link);
        }
        Link::Owned(id) => program
            .detach(id)
            .map_err(|source| DataplaneError::Program {
                name: PROG_MAIN,
                source: Box::new(source),
            })?,
    }
    Ok(())
}

/// Removes a link pin that no data plane holds, detaching its program
/// before returning (the kernel releases a link whose pin goes later,
/// from a work queue; closing the last descriptor releases it at once).
pub(super) fn remove_link_pin(path: &Path) -> Result<(), DataplaneError> {
    match PinnedLink::from_pin(path) {
        Ok(pinned) => {
            let link = pinned.unpin().map_err(|source| DataplaneError::PinDir {
                path: path.to_owned(),
                source,
            })?;
            drop(link);
            Ok(())
        }
        Err(_) => unpin(path),
    }
}

/// The link pinned at `path`, now running `program`.
fn adopt(program: &mut Xdp, path: &Path) -> Result<FdLink, DataplaneError> {
    let pin_error = |source: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Pin {
        path: path.to_owned(),
        source,
    };
    let pinned = PinnedLink::from_pin(path).map_err(|e| pin_error(Box::new(e)))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_error(Box::new(e)))?;
    let id = program
        .attach_to_link(link)
        .map_err(|e| pin_error(Box::new(e)))?;
    let link = program.take_link(id).map_err(|e| pin_error(Box::new(e)))?;
    FdLink::try_from(link).map_err(|e| pin_error(Box::new(e)))
}

/// Pins the new link `id` of `program` at `path`; the data plane holds it
/// from then on.
fn pin(program: &mut Xdp, id: XdpLinkId, path: &Path) -> Result<FdLink, DataplaneError> {
    let pin_error = |source: Box<dyn std::error::Error + Send + Sync>| DataplaneError::Pin {
        path: path.to_owned(),
        source,
    };
    let link = program.take_link(id).map_err(|e| pin_error(Box::new(e)))?;
    // An XDP link (5.9+, checked at load): a netlink attachment has none.
    let link = FdLink::try_from(link).map_err(|e| pin_error(Box::new(e)))?;
    let pinned = link.pin(path).map_err(|e| pin_error(Box::new(e)))?;
    Ok(FdLink::from(pinned))
}

/// Attaches program `name` to `iface` in the mode `mode` asks for (`auto`:
/// driver, else generic, logged); the link stays with the program.
pub(super) fn attach_program(
    program: &mut Xdp,
    name: &'static str,
    iface: &str,
    mode: XdpModeConfig,
) -> Result<(AttachedMode, XdpLinkId), DataplaneError> {
    let attach = |program: &mut Xdp, mode: AttachedMode| program.attach(iface, mode.aya());
    let fixed = |program: &mut Xdp, mode: AttachedMode| {
        attach(program, mode)
            .map(|link| (mode, link))
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_owned(),
                mode,
                source: Box::new(source),
            })
    };
    match mode {
        XdpModeConfig::Driver => fixed(program, AttachedMode::Driver),
        XdpModeConfig::Generic => fixed(program, AttachedMode::Generic),
        XdpModeConfig::Auto => match attach(program, AttachedMode::Driver) {
            Ok(link) => Ok((AttachedMode::Driver, link)),
            Err(driver) => {
                warn!(
                    iface,
                    program = name,
                    "driver-mode XDP unavailable ({driver}); trying generic mode"
                );
                match attach(program, AttachedMode::Generic) {
                    Ok(link) => Ok((AttachedMode::Generic, link)),
                    Err(generic) => Err(DataplaneError::AttachBoth {
                        iface: iface.to_owned(),
                        driver: Box::new(driver),
                        generic: Box::new(generic),
                    }),
                }
            }
        },
    }
}
