//! `vipx-agent import --keepalived FILE --haproxy FILE`: a vipx.toml from a
//! keepalived.conf and a haproxy.cfg, with a note for every setting that
//! could not be carried over (and why).
//!
//! - [`keepalived`]: `global_defs`, `vrrp_script`, `vrrp_instance` (to
//!   `[[group]]`) and LVS `virtual_server` (to `[[service]]`);
//! - [`haproxy`]: `listen` / `frontend` + `backend` in TCP mode (to
//!   `[[service]]`), `default-server`, `option pgsql-check`, the stats
//!   listener (to `[api] listen`);
//! - [`render`]: the model as TOML, in the order of `config/vipx.toml`.

mod haproxy;
mod keepalived;
mod render;
#[cfg(test)]
mod tests;

use std::{net::IpAddr, path::Path, time::Duration};

use thiserror::Error;

/// A file that cannot be read as what it claims to be.
#[derive(Debug, Error)]
#[error("{file}:{line}: {message}")]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// What the import made: the configuration text and its notes.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    /// "file:line: setting: why it was not carried over (or how it was)".
    pub notes: Vec<String>,
}

/// The configuration being built.
#[derive(Debug, Default)]
struct Model {
    node_name: Option<String>,
    api_listen: Option<String>,
    groups: Vec<Group>,
    services: Vec<Service>,
    notes: Vec<String>,
}

#[derive(Debug, Default)]
struct Group {
    name: String,
    vrid: u8,
    interface: String,
    vips: Vec<String>,
    master: bool,
    priority: Option<u8>,
    advert_interval: Option<Duration>,
    preempt: bool,
    preempt_delay: Option<Duration>,
    unicast_peers: Vec<IpAddr>,
    garp_repeat: Option<u32>,
    garp_refresh: Option<Duration>,
    track_interface: Vec<(String, i32)>,
    track_script: Vec<Script>,
    notify: Vec<(&'static str, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
struct Script {
    name: String,
    command: Vec<String>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    weight: i32,
}

#[derive(Debug, Default)]
struct Service {
    name: String,
    vip: Option<IpAddr>,
    port: u16,
    mode: &'static str,
    udp: bool,
    backends: Vec<Backend>,
    health: Option<Health>,
    /// Where it came from, for the notes.
    origin: String,
}

#[derive(Debug)]
struct Backend {
    name: String,
    address: IpAddr,
    port: Option<u16>,
    weight: u32,
}

#[derive(Debug, Default)]
struct Health {
    check: &'static str,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    port: Option<u16>,
    user: Option<String>,
    path: Option<String>,
}

impl Model {
    fn note(&mut self, file: &str, line: usize, text: impl std::fmt::Display) {
        self.notes.push(format!("{file}:{line}: {text}"));
    }
}

/// Reads the files and makes the configuration.
pub fn import(keepalived: Option<&Path>, haproxy: Option<&Path>) -> anyhow::Result<Imported> {
    use anyhow::Context as _;
    if keepalived.is_none() && haproxy.is_none() {
        anyhow::bail!("give --keepalived FILE, --haproxy FILE or both");
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let keepalived = keepalived
        .map(|p| read(p).map(|t| (p.display().to_string(), t)))
        .transpose()?;
    let haproxy = haproxy
        .map(|p| read(p).map(|t| (p.display().to_string(), t)))
        .transpose()?;
    Ok(convert(
        keepalived.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        haproxy.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
    )?)
}

/// The conversion itself, on texts (`(file name, text)`).
pub fn convert(
    keepalived: Option<(&str, &str)>,
    haproxy: Option<(&str, &str)>,
) -> Result<Imported, ImportError> {
    let mut model = Model::default();
    if let Some((file, text)) = keepalived {
        keepalived::convert(file, text, &mut model)?;
    }
    if let Some((file, text)) = haproxy {
        haproxy::convert(file, text, &mut model)?;
    }
    render::finish(&mut model);
    Ok(Imported {
        toml: render::render(&model),
        notes: model.notes,
    })
}

/// keepalived and HAProxy times: a number of seconds (keepalived, may be
/// fractional) or a number with a unit (HAProxy: `us`, `ms`, `s`, `m`,
/// `h`, `d`; plain numbers are milliseconds there).
fn parse_time(text: &str, bare_unit_ms: bool) -> Option<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" if bare_unit_ms => value / 1000.0,
        "" | "s" => value,
        "us" => value / 1_000_000.0,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}
