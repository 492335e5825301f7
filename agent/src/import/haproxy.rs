//! haproxy.cfg: `listen`, and `frontend` with its `default_backend`, in
//! TCP mode, as vipx services in nat mode (like HAProxy, the backends see
//! the balancer's address); `default-server`, health-check options and
//! the stats listener.

use std::{collections::HashMap, net::IpAddr};

use super::{Backend, Health, ImportError, Model, Service, parse_time};

/// One section: its kind, name, line and its lines (words, line number).
#[derive(Debug, Default)]
struct Section {
    kind: String,
    name: String,
    line: usize,
    lines: Vec<(Vec<String>, usize)>,
}

const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "log-forward",
    "crt-store",
    "traces",
];

fn sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let Some(first) = words.first() else { continue };
        if SECTIONS.contains(&first.as_str()) {
            out.push(Section {
                kind: first.clone(),
                name: words.get(1).cloned().unwrap_or_default(),
                line: index + 1,
                lines: Vec::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.lines.push((words, index + 1));
        }
    }
    out
}

/// What `defaults` and `default-server` give every section.
#[derive(Clone, Debug, Default)]
struct Defaults {
    /// `default-server` words.
    server: Vec<String>,
    /// `option ...` lines, with their line numbers.
    options: Vec<(Vec<String>, usize)>,
    mode: Option<String>,
}

pub(super) fn convert(file: &str, text: &str, model: &mut Model) -> Result<(), ImportError> {
    let all = sections(text);
    if all.is_empty() && !text.trim().is_empty() {
        return Err(ImportError {
            file: file.to_owned(),
            line: 1,
            message: "no section (global, defaults, frontend, backend, listen): not a haproxy.cfg"
                .into(),
        });
    }
    let mut defaults = Defaults::default();
    let backends: HashMap<&str, &Section> = all
        .iter()
        .filter(|s| s.kind == "backend")
        .map(|s| (s.name.as_str(), s))
        .collect();
    for section in &all {
        match section.kind.as_str() {
            "defaults" => defaults = read_defaults(file, section, model),
            "listen" | "frontend" => front(file, section, &defaults, &backends, model),
            "backend" | "global" => {}
            other => model.note(
                file,
                section.line,
                format!("{other} {}: not carried over", section.name),
            ),
        }
    }
    for section in all.iter().filter(|s| s.kind == "global") {
        for (words, line) in &section.lines {
            model.note(
                file,
                *line,
                format!(
                    "global {}: not carried over (vipx has no equivalent)",
                    words.join(" ")
                ),
            );
        }
    }
    Ok(())
}

fn read_defaults(file: &str, section: &Section, model: &mut Model) -> Defaults {
    let mut defaults = Defaults::default();
    for (words, line) in &section.lines {
        match words[0].as_str() {
            "mode" => defaults.mode = words.get(1).cloned(),
            "default-server" => defaults.server = words[1..].to_vec(),
            "option" => defaults.options.push((words[1..].to_vec(), *line)),
            "timeout" => timeout_note(file, *line, words, model),
            "log" | "retries" | "maxconn" | "balance" => {
                if words[0] == "balance" {
                    balance_note(file, *line, words, model);
                } else {
                    model.note(
                        file,
                        *line,
                        format!("defaults {}: not carried over", words.join(" ")),
                    );
                }
            }
            _ => model.note(
                file,
                *line,
                format!("defaults {}: not carried over", words.join(" ")),
            ),
        }
    }
    defaults
}

fn timeout_note(file: &str, line: usize, words: &[String], model: &mut Model) {
    let what = words.join(" ");
    if matches!(
        words.get(1).map(String::as_str),
        Some("client" | "server" | "tunnel")
    ) {
        model.note(file, line, format!("{what}: vipx keeps idle TCP flows for [dataplane] tcp_idle_timeout (1h by default): set it there if you need a bound"));
    } else {
        model.note(file, line, format!("{what}: not carried over (vipx does not proxy: the client connects to the backend itself)"));
    }
}

fn balance_note(file: &str, line: usize, words: &[String], model: &mut Model) {
    let algo = words.get(1).map_or("", String::as_str);
    if algo != "roundrobin" && algo != "static-rr" {
        model.note(file, line, format!("balance {algo}: vipx balances with weighted Maglev consistent hashing (each connection sticks to its backend)"));
    }
}

/// A `listen` or a `frontend` (with its `default_backend`).
fn front(
    file: &str,
    section: &Section,
    defaults: &Defaults,
    backends: &HashMap<&str, &Section>,
    model: &mut Model,
) {
    let mut binds: Vec<(String, usize)> = Vec::new();
    let mut mode = defaults.mode.clone();
    let mut stats = false;
    let mut backend_section: Vec<&Section> = Vec::new();
    for (words, line) in &section.lines {
        match words[0].as_str() {
            "bind" => binds.extend(
                words
                    .get(1)
                    .into_iter()
                    .flat_map(|b| b.split(','))
                    .map(|b| (b.to_owned(), *line)),
            ),
            "mode" => mode = words.get(1).cloned(),
            "stats" => stats = true,
            "default_backend" => match words.get(1).and_then(|b| backends.get(b.as_str())) {
                Some(b) => backend_section.push(b),
                None => model.note(file, *line, format!("{}: no such backend", words.join(" "))),
            },
            "use_backend" => model.note(
                file,
                *line,
                format!(
                    "{}: vipx sends a service to one pool; only default_backend is carried over",
                    words.join(" ")
                ),
            ),
            _ => {}
        }
    }
    if stats {
        if let Some((bind, line)) = binds.first() {
            let port = bind.rsplit(':').next().unwrap_or("8404");
            model.api_listen = Some(format!("0.0.0.0:{port}"));
            model.note(file, *line, format!("{} {} (stats): the agent's API, /metrics and its stats page listen there ([api] listen)", section.kind, section.name));
        }
        return;
    }
    if mode.as_deref() == Some("http") {
        model.note(
            file,
            section.line,
            format!(
                "{} {}: mode http: vipx balances TCP (L4); carried over as TCP, HTTP rules are not",
                section.kind, section.name
            ),
        );
    }
    let mut servers = Vec::new();
    let mut options = defaults.options.clone();
    let mut own: Vec<&Section> = vec![section];
    own.extend(backend_section);
    let mut default_server = defaults.server.clone();
    for part in &own {
        for (words, line) in &part.lines {
            match words[0].as_str() {
                "server" => servers.push((words.clone(), *line)),
                "default-server" => default_server = words[1..].to_vec(),
                "option" => options.push((words[1..].to_vec(), *line)),
                "balance" => balance_note(file, *line, words, model),
                "timeout" => timeout_note(file, *line, words, model),
                "bind" | "mode" | "default_backend" | "use_backend" | "stats" => {}
                "server-template" => model.note(
                    file,
                    *line,
                    "server-template: vipx needs each backend's address: list them",
                ),
                _ => model.note(
                    file,
                    *line,
                    format!(
                        "{} {} {}: not carried over",
                        part.kind,
                        part.name,
                        words.join(" ")
                    ),
                ),
            }
        }
    }
    for (bind, line) in binds {
        let Some((addr, port)) = split_bind(&bind) else {
            model.note(
                file,
                line,
                format!("bind {bind}: not an address:port vipx can take"),
            );
            continue;
        };
        let vip = addr.or_else(|| {
            model
                .groups
                .iter()
                .flat_map(|g| &g.vips)
                .find_map(|v| v.split('/').next()?.parse().ok())
        });
        if vip.is_none() {
            model.note(file, line, format!("bind {bind}: a wildcard address, and no VIP to put there (import the keepalived.conf too): service not carried over"));
            continue;
        }
        let mut service = Service {
            name: section.name.clone(),
            vip,
            port,
            mode: "nat",
            origin: format!("{file}:{}", section.line),
            ..Service::default()
        };
        for (words, line) in &servers {
            if let Some(backend) = server(
                file,
                *line,
                words,
                &default_server,
                &options,
                &mut service,
                model,
            ) {
                service.backends.push(backend);
            }
        }
        if service.backends.is_empty() {
            model.note(
                file,
                section.line,
                format!(
                    "{} {}: no server to carry over: service not carried over",
                    section.kind, section.name
                ),
            );
            continue;
        }
        model.services.push(service);
    }
}

/// `*:5432`, `:5432`, `10.0.1.100:5432`, `[::]:5432`, `:::5432`.
fn split_bind(bind: &str) -> Option<(Option<IpAddr>, u16)> {
    let (addr, port) = bind.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let ip = match addr {
        "" | "*" | "0.0.0.0" | "::" | "::0" => None,
        a => Some(a.parse().ok()?),
    };
    Some((ip, port))
}

/// One `server NAME ADDR[:PORT] params`, with `default-server`'s params
/// first; sets the service's health check from the first server that has
/// `check`.
fn server(
    file: &str,
    line: usize,
    words: &[String],
    default_server: &[String],
    options: &[(Vec<String>, usize)],
    service: &mut Service,
    model: &mut Model,
) -> Option<Backend> {
    let name = words.get(1)?.clone();
    let target = words.get(2)?;
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !target.starts_with("::") => (h, p.parse().ok()),
        _ => (target.as_str(), None),
    };
    let Ok(address) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        model.note(
            file,
            line,
            format!("server {name} {target}: vipx needs an address, not a name"),
        );
        return None;
    };
    let mut params: Vec<&str> = default_server.iter().map(String::as_str).collect();
    params.extend(words[3..].iter().map(String::as_str));
    let mut weight = 1;
    let mut check = false;
    let mut health = Health {
        check: "tcp",
        // HAProxy's defaults: inter 2s, fall 3, rise 2.
        interval: parse_time("2s", true),
        fall: Some(3),
        rise: Some(2),
        ..Health::default()
    };
    let mut i = 0;
    while i < params.len() {
        let value = params.get(i + 1).copied().unwrap_or("");
        match params[i] {
            "check" => check = true,
            "weight" => {
                weight = value.parse().unwrap_or(1);
                i += 1;
            }
            "inter" => {
                health.interval = parse_time(value, true);
                i += 1;
            }
            "fall" => {
                health.fall = value.parse().ok();
                i += 1;
            }
            "rise" => {
                health.rise = value.parse().ok();
                i += 1;
            }
            "port" => {
                health.port = value.parse().ok();
                i += 1;
            }
            "disabled" => {
                weight = 0;
                model.note(
                    file,
                    line,
                    format!("server {name} disabled: carried over with weight 0 (no new flows)"),
                );
            }
            "backup" => {
                model.note(
                    file,
                    line,
                    format!("server {name} backup: vipx has no backup servers; not carried over"),
                );
                return None;
            }
            other => {
                let takes_value = matches!(
                    other,
                    "maxconn"
                        | "fastinter"
                        | "downinter"
                        | "slowstart"
                        | "on-marked-down"
                        | "on-error"
                        | "agent-port"
                        | "agent-inter"
                        | "crt"
                        | "ca-file"
                        | "cookie"
                        | "init-addr"
                        | "resolvers"
                        | "send-proxy-v2"
                        | "observe"
                        | "error-limit"
                );
                model.note(
                    file,
                    line,
                    format!(
                        "server {name} {other}{}: not carried over",
                        if takes_value {
                            format!(" {value}")
                        } else {
                            String::new()
                        }
                    ),
                );
                if takes_value {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    if check && service.health.is_none() {
        for (option, option_line) in options {
            match option.first().map(String::as_str) {
                Some("pgsql-check") => {
                    health.check = "postgres";
                    health.user = option
                        .iter()
                        .position(|w| w == "user")
                        .and_then(|p| option.get(p + 1))
                        .cloned();
                }
                Some("httpchk") => {
                    health.check = "http";
                    health.path = option.iter().skip(1).find(|w| w.starts_with('/')).cloned();
                }
                Some("tcp-check") | None => {}
                Some(other) => model.note(
                    file,
                    *option_line,
                    format!("option {other}: not carried over"),
                ),
            }
        }
        service.health = Some(health);
    }
    Some(Backend {
        name,
        address,
        port: port.filter(|&p| p != service.port),
        weight,
    })
}
