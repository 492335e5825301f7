//! keepalived.conf: its blocks (`name args { ... }`), read into a tree,
//! then `global_defs`, `vrrp_script`, `vrrp_instance` and LVS
//! `virtual_server` converted.

use std::{collections::HashMap, net::IpAddr};

use super::{Backend, Group, Health, ImportError, Model, Script, Service, parse_time};

/// One statement: its words, its line, and its block when it has one.
#[derive(Debug)]
struct Node {
    words: Vec<String>,
    line: usize,
    block: Option<Vec<Node>>,
}

impl Node {
    fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    End,
}

/// Words, braces and ends of lines; `#` and `!` start comments; double
/// quotes keep spaces.
fn tokens(file: &str, text: &str) -> Result<Vec<(Token, usize)>, ImportError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' | '!' => break,
                '{' => {
                    chars.next();
                    out.push((Token::Open, number));
                }
                '}' => {
                    chars.next();
                    out.push((Token::Close, number));
                }
                '"' => {
                    chars.next();
                    let mut word = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(c) => word.push(c),
                            None => {
                                return Err(ImportError {
                                    file: file.to_owned(),
                                    line: number,
                                    message: "a quoted string does not end on its line".into(),
                                });
                            }
                        }
                    }
                    out.push((Token::Word(word), number));
                }
                c if c.is_whitespace() => {
                    chars.next();
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || matches!(c, '{' | '}' | '"') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    out.push((Token::Word(word), number));
                }
            }
        }
        out.push((Token::End, number));
    }
    Ok(out)
}

/// The statements of a block (or of the file, `depth` 0).
fn parse(
    file: &str,
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<(Token, usize)>>,
    depth: usize,
    opened: usize,
) -> Result<Vec<Node>, ImportError> {
    let err = |line, message: &str| ImportError {
        file: file.to_owned(),
        line,
        message: message.to_owned(),
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut words = Vec::new();
    let mut first_line = 0;
    while let Some((token, line)) = tokens.next() {
        match token {
            Token::Word(w) => {
                if words.is_empty() {
                    first_line = line;
                }
                words.push(w);
            }
            Token::End => {
                if !words.is_empty() {
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        line: first_line,
                        block: None,
                    });
                }
            }
            Token::Open => {
                if words.is_empty() {
                    // `name` on one line, `{` on the next.
                    match nodes.pop() {
                        Some(node) if node.block.is_none() => {
                            words = node.words;
                            first_line = node.line;
                        }
                        _ => return Err(err(line, "a block with no name before its `{`")),
                    }
                }
                let block = parse(file, tokens, depth + 1, line)?;
                nodes.push(Node {
                    words: std::mem::take(&mut words),
                    line: first_line,
                    block: Some(block),
                });
            }
            Token::Close => {
                if depth == 0 {
                    return Err(err(line, "a `}` closes no block"));
                }
                if !words.is_empty() {
                    nodes.push(Node {
                        words: std::mem::take(&mut words),
                        line: first_line,
                        block: None,
                    });
                }
                return Ok(nodes);
            }
        }
    }
    if depth > 0 {
        return Err(err(opened, "this block's `{` is never closed"));
    }
    Ok(nodes)
}

pub(super) fn convert(file: &str, text: &str, model: &mut Model) -> Result<(), ImportError> {
    let mut stream = tokens(file, text)?.into_iter().peekable();
    let nodes = parse(file, &mut stream, 0, 0)?;
    let mut scripts = HashMap::new();
    for node in nodes.iter().filter(|n| n.key() == "vrrp_script") {
        let script = script(file, node, model);
        scripts.insert(script.name.clone(), script);
    }
    for node in &nodes {
        match node.key() {
            "global_defs" => global_defs(file, node, model),
            "vrrp_script" => {}
            "vrrp_instance" => instance(file, node, &scripts, model)?,
            "virtual_server" => virtual_server(file, node, model),
            "include" => model.note(
                file,
                node.line,
                "include: not followed; import the included file as well",
            ),
            other => model.note(
                file,
                node.line,
                format!("{other}: not carried over (vipx has no equivalent)"),
            ),
        }
    }
    Ok(())
}

fn global_defs(file: &str, node: &Node, model: &mut Model) {
    for child in node.children() {
        match (child.key(), child.arg(1)) {
            ("router_id", Some(id)) => model.node_name = Some(id.to_owned()),
            ("vrrp_version", Some("3")) => {}
            ("vrrp_version", Some(v)) => model.note(file, child.line, format!("vrrp_version {v}: vipx speaks VRRPv3; keepalived peers must run vrrp_version 3 to share a VRID with it")),
            ("enable_script_security" | "script_user", _) => model.note(file, child.line, format!("{}: vipx runs scripts as itself (root with the unit's capabilities); not carried over", child.key())),
            (key, _) => model.note(file, child.line, format!("global_defs {key}: not carried over")),
        }
    }
}

fn script(file: &str, node: &Node, model: &mut Model) -> Script {
    let mut script = Script {
        name: node.arg(1).unwrap_or("script").to_owned(),
        weight: 0,
        ..Script::default()
    };
    for child in node.children() {
        let value = child.arg(1).unwrap_or("");
        match child.key() {
            "script" => script.command = command(&child.words[1..]),
            "interval" => script.interval = parse_time(value, false),
            "timeout" => script.timeout = parse_time(value, false),
            "rise" => script.rise = value.parse().ok(),
            "fall" => script.fall = value.parse().ok(),
            "weight" => script.weight = value.parse().unwrap_or(0),
            key => model.note(
                file,
                child.line,
                format!("vrrp_script {} {key}: not carried over", script.name),
            ),
        }
    }
    script
}

/// A command as keepalived gives it: one quoted string (split as a shell
/// would) or its words.
fn command(words: &[String]) -> Vec<String> {
    match words {
        [one] => shell_words::split(one).unwrap_or_else(|_| vec![one.clone()]),
        many => many.to_vec(),
    }
}

/// A VIP with its prefix (keepalived's default is a host address).
fn vip(word: &str) -> Option<String> {
    let (addr, prefix) = word
        .split_once('/')
        .map_or((word, None), |(a, p)| (a, Some(p)));
    let ip: IpAddr = addr.parse().ok()?;
    let prefix = prefix.map_or_else(
        || if ip.is_ipv4() { "32" } else { "128" }.to_owned(),
        str::to_owned,
    );
    Some(format!("{ip}/{prefix}"))
}

fn instance(
    file: &str,
    node: &Node,
    scripts: &HashMap<String, Script>,
    model: &mut Model,
) -> Result<(), ImportError> {
    let mut group = Group {
        name: node.arg(1).unwrap_or("vip").to_owned(),
        preempt: true,
        ..Group::default()
    };
    let name = group.name.clone();
    for child in node.children() {
        let value = child.arg(1).unwrap_or("");
        let line = child.line;
        match child.key() {
            "state" => group.master = value.eq_ignore_ascii_case("MASTER"),
            "interface" => group.interface = value.to_owned(),
            "virtual_router_id" => {
                group.vrid = value.parse().map_err(|_| ImportError {
                    file: file.to_owned(),
                    line,
                    message: format!("virtual_router_id {value}: not 1-255"),
                })?;
            }
            "priority" => group.priority = value.parse().ok(),
            "advert_int" => group.advert_interval = parse_time(value, false),
            "nopreempt" => group.preempt = false,
            "preempt" => group.preempt = true,
            "preempt_delay" => group.preempt_delay = parse_time(value, false),
            "garp_master_repeat" => group.garp_repeat = value.parse().ok(),
            "garp_master_refresh" => group.garp_refresh = parse_time(value, false).filter(|d| !d.is_zero()),
            "unicast_src_ip" => model.note(file, line, format!("vrrp_instance {name} unicast_src_ip {value}: vipx sends from the interface's primary address of the VIPs' family (make it {value})")),
            "unicast_peer" => {
                for peer in child.children() {
                    match peer.key().parse() {
                        Ok(ip) => group.unicast_peers.push(ip),
                        Err(_) => model.note(file, peer.line, format!("unicast_peer {}: not an address", peer.key())),
                    }
                }
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for addr in child.children() {
                    match vip(addr.key()) {
                        Some(v) => group.vips.push(v),
                        None => model.note(file, addr.line, format!("{}: not an address", addr.key())),
                    }
                    if let Some(pos) = addr.words.iter().position(|w| w == "dev")
                        && addr.arg(pos + 1).is_some_and(|dev| dev != group.interface)
                    {
                        model.note(file, addr.line, format!("{} dev {}: vipx puts a group's VIPs on the group's interface", addr.key(), addr.arg(pos + 1).unwrap_or("")));
                    }
                }
            }
            "track_script" => {
                for track in child.children() {
                    let Some(mut script) = scripts.get(track.key()).cloned() else {
                        model.note(file, track.line, format!("track_script {}: no vrrp_script of that name", track.key()));
                        continue;
                    };
                    if track.arg(1) == Some("weight")
                        && let Some(w) = track.arg(2).and_then(|w| w.parse().ok())
                    {
                        script.weight = w;
                    }
                    group.track_script.push(script);
                }
            }
            "track_interface" => {
                for track in child.children() {
                    let weight = (track.arg(1) == Some("weight"))
                        .then(|| track.arg(2).and_then(|w| w.parse().ok()))
                        .flatten()
                        .unwrap_or(0);
                    group.track_interface.push((track.key().to_owned(), weight));
                }
            }
            key @ ("notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify") => {
                let key = match key {
                    "notify_master" => "notify_master",
                    "notify_backup" => "notify_backup",
                    "notify_fault" => "notify_fault",
                    "notify_stop" => "notify_stop",
                    _ => "notify",
                };
                group.notify.push((key, command(&child.words[1..])));
            }
            "authentication" => model.note(file, line, format!("vrrp_instance {name} authentication: not carried over (VRRPv3 has none, RFC 5798; vipx's heartbeat and replication have their own secret)")),
            "version" if value == "3" => {}
            key => model.note(file, line, format!("vrrp_instance {name} {key}: not carried over")),
        }
    }
    if group.vrid == 0 || group.interface.is_empty() || group.vips.is_empty() {
        return Err(ImportError {
            file: file.to_owned(),
            line: node.line,
            message: format!(
                "vrrp_instance {name}: needs virtual_router_id, interface and virtual_ipaddress"
            ),
        });
    }
    model.groups.push(group);
    Ok(())
}

/// LVS `virtual_server IP PORT { ... real_server IP PORT { ... } }`: the
/// kernel-NAT set-up (keepalived + IPVS) as a vipx service.
fn virtual_server(file: &str, node: &Node, model: &mut Model) {
    let (Some(Ok(vip)), Some(Ok(port))) = (
        node.arg(1).map(str::parse::<IpAddr>),
        node.arg(2).map(str::parse::<u16>),
    ) else {
        model.note(
            file,
            node.line,
            format!(
                "virtual_server {}: only IP PORT is carried over (not groups or fwmarks)",
                node.words[1..].join(" ")
            ),
        );
        return;
    };
    let mut service = Service {
        name: format!("vs-{port}"),
        vip: Some(vip),
        port,
        mode: "nat",
        origin: format!("{file}:{}", node.line),
        ..Service::default()
    };
    let mut interval = None;
    for child in node.children() {
        let value = child.arg(1).unwrap_or("");
        match child.key() {
            "lb_kind" => match value {
                "NAT" => service.mode = "nat",
                "DR" => service.mode = "dsr",
                other => model.note(
                    file,
                    child.line,
                    format!("lb_kind {other}: vipx has nat and dsr; nat used"),
                ),
            },
            "protocol" => service.udp = value.eq_ignore_ascii_case("UDP"),
            "delay_loop" => interval = parse_time(value, false),
            "lb_algo" => model.note(
                file,
                child.line,
                format!("lb_algo {value}: vipx balances with weighted Maglev consistent hashing"),
            ),
            "real_server" => real_server(file, child, &mut service, model),
            key => model.note(
                file,
                child.line,
                format!("virtual_server {key}: not carried over"),
            ),
        }
    }
    if let Some(health) = &mut service.health {
        health.interval = health.interval.or(interval);
    }
    model.services.push(service);
}

fn real_server(file: &str, node: &Node, service: &mut Service, model: &mut Model) {
    let Some(Ok(address)) = node.arg(1).map(str::parse::<IpAddr>) else {
        model.note(file, node.line, "real_server: not an address");
        return;
    };
    let port = node.arg(2).and_then(|p| p.parse().ok());
    let mut weight = 1;
    for child in node.children() {
        let value = child.arg(1).unwrap_or("");
        match child.key() {
            "weight" => weight = value.parse().unwrap_or(1),
            check @ ("TCP_CHECK" | "HTTP_GET" | "MISC_CHECK") if service.health.is_none() => {
                let mut health = Health {
                    check: if check == "HTTP_GET" { "http" } else { "tcp" },
                    ..Health::default()
                };
                for option in child.children() {
                    let value = option.arg(1).unwrap_or("");
                    match option.key() {
                        "connect_timeout" => health.timeout = parse_time(value, false),
                        "connect_port" => health.port = value.parse().ok(),
                        "retry" | "nb_get_retry" => health.fall = value.parse().ok(),
                        "url" => {
                            health.path = option
                                .children()
                                .iter()
                                .find(|o| o.key() == "path")
                                .and_then(|o| o.arg(1))
                                .map(str::to_owned);
                        }
                        key => model.note(
                            file,
                            option.line,
                            format!("{check} {key}: not carried over"),
                        ),
                    }
                }
                if check == "MISC_CHECK" {
                    model.note(file, child.line, "MISC_CHECK: carried over as a TCP check; use check = \"exec\" with the script for the same test");
                }
                service.health = Some(health);
            }
            "TCP_CHECK" | "HTTP_GET" | "MISC_CHECK" => {}
            key => model.note(
                file,
                child.line,
                format!("real_server {key}: not carried over"),
            ),
        }
    }
    service.backends.push(Backend {
        name: format!("{address}"),
        address,
        port: port.filter(|&p| p != service.port),
        weight,
    });
}
