//! Configurations that parse but cannot work, refused by `check-config`
//! with the file, line and column of the group or service at fault.

use std::path::Path;

use super::Config;

const HEAD: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n";

fn error_of(text: &str) -> String {
    Config::parse(Path::new("/etc/vipx/vipx.toml"), text)
        .expect_err("the config should be refused")
        .to_string()
}

/// The line of the first occurrence of `needle` in `text` (1-based).
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("needle in text")]
        .matches('\n')
        .count()
        + 1
}

fn group(vips: &[String], interface: &str) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    format!(
        "\n[[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"{interface}\"\nvips = [{}]\n",
        vips.join(", ")
    )
}

#[test]
fn more_vips_than_one_advert_carries_are_refused() {
    // RFC 5798 5.2.5: Count IPvX Addr is one byte.
    let v4: Vec<String> = (0..256)
        .map(|i| format!("10.0.{}.{}/16", i / 250, i % 250 + 1))
        .collect();
    let text = format!("{HEAD}{}", group(&v4, "eth0"));
    let err = error_of(&text);
    let line = line_of(&text, "[[group]]");
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{line}:1: ")),
        "names the group's line: {err}"
    );
    assert!(err.contains("at most 255 IPv4 VIPs"), "{err}");
    let fits = format!("{HEAD}{}", group(&v4[..255], "eth0"));
    Config::parse(Path::new("x.toml"), &fits).expect("255 IPv4 VIPs fit one advert");
    // IPv6: 90 addresses of 16 bytes fill a 1500-byte frame.
    let v6: Vec<String> = (1..=91).map(|i| format!("fd00::{i:x}/64")).collect();
    let err = error_of(&format!("{HEAD}{}", group(&v6, "eth0")));
    assert!(err.contains("at most 90 IPv6 VIPs"), "{err}");
}

#[test]
fn a_group_on_an_interface_without_xdp_is_refused() {
    let text = format!("{HEAD}{}", group(&["10.0.1.100/24".to_owned()], "eth1"));
    let err = error_of(&text);
    let line = line_of(&text, "[[group]]");
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{line}:1: ")),
        "{err}"
    );
    assert!(
        err.contains("interface eth1 is not in dataplane.interfaces"),
        "{err}"
    );
}

#[test]
fn a_nat_service_port_inside_its_nat_ports_is_refused() {
    let service = "\n[[service]]\nname = \"pgbouncer\"\nvip = \"10.0.1.100\"\nport = 40000\nbackends = [{ address = \"10.0.1.10\", port = 6432 }]\n";
    let text = format!(
        "{HEAD}{}{service}",
        group(&["10.0.1.100/24".to_owned()], "eth0")
    );
    let err = error_of(&text);
    let line = line_of(&text, "[[service]]");
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{line}:1: ")),
        "{err}"
    );
    assert!(
        err.contains("port 40000 is inside its nat_ports 32768-60999"),
        "{err}"
    );
    // DSR has no NAT ports; a NAT range elsewhere is fine.
    let dsr = text
        .replace("port = 40000\n", "port = 40000\nmode = \"dsr\"\n")
        .replace("port = 6432 }", "port = 40000 }");
    Config::parse(Path::new("x.toml"), &dsr).expect("dsr takes any port");
    let moved = text.replace(
        "port = 40000\n",
        "port = 40000\nnat_ports = \"20000-30000\"\n",
    );
    Config::parse(Path::new("x.toml"), &moved).expect("a NAT range that leaves the port out");
}
