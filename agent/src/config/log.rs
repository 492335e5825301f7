//! `[log]`: the log level (overridden by `RUST_LOG`).

use serde::{Deserialize, Deserializer, de::Error as _};
use tracing_subscriber::filter::LevelFilter;

/// `[log]`
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or `RUST_LOG`
    /// directives (`info,vipx_agent::health=debug`). Default `info`;
    /// `RUST_LOG`, when set, wins.
    #[serde(default)]
    pub level: LogLevel,
}

/// Log filter directives, checked when read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLevel(pub String);

impl Default for LogLevel {
    fn default() -> Self {
        Self("info".to_owned())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let directives = String::deserialize(deserializer)?;
        // Each directive is LEVEL or TARGET=LEVEL: a bare word that is no
        // level would be a target, silencing everything else.
        for directive in directives.split(',') {
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            if level.trim().parse::<LevelFilter>().is_err() {
                return Err(D::Error::custom(format!(
                    "level {directives:?}: {directive:?} is not LEVEL or TARGET=LEVEL (LEVEL: off, error, warn, info, debug, trace)"
                )));
            }
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(&directives)
            .map_err(|err| D::Error::custom(format!("level {directives:?}: {err}")))?;
        Ok(Self(directives))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const BASE: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

    #[test]
    fn the_level_is_info_unless_set_and_a_bad_one_is_pointed_at() {
        let parse = |text: &str| Config::parse(Path::new("/etc/vipx/vipx.toml"), text);
        let config = parse(BASE).expect("no [log]");
        assert_eq!(config.log.level.0, "info");
        let config = parse(&format!(
            "{BASE}[log]\nlevel = \"debug,vipx_agent::health=trace\"\n"
        ))
        .expect("directives");
        assert_eq!(config.log.level.0, "debug,vipx_agent::health=trace");
        let err = parse(&format!("{BASE}[log]\nlevel = \"verbose\"\n"))
            .expect_err("a bad level is rejected")
            .to_string();
        assert!(err.starts_with("/etc/vipx/vipx.toml:4:9: "), "{err}");
        assert!(err.contains("verbose"), "{err}");
    }
}
