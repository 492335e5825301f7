//! `[api]`: `read_listen` and `[api.tls]`, and where their errors point.

use std::path::Path;

use super::*;
use crate::config::{Config, ConfigError};

const BASE: &str = "[dataplane]\ninterfaces = [\"eth0\"]\n\n[api]\nlisten = \"10.0.0.1:9469\"\n";
const TLS: &str = "\n[api.tls]\ncert_file = \"/etc/vipx/tls/api.pem\"\nkey_file = \"/etc/vipx/tls/api.key\"\nca_file = \"/etc/vipx/tls/ca.pem\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/vipx/vipx.toml"), text)
}

fn error_of(text: &str) -> String {
    parse(text).expect_err("rejected").to_string()
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("in the text")]
        .matches('\n')
        .count()
        + 1
}

#[test]
fn without_tls_or_read_listen_the_api_is_plain_http_on_one_address() {
    let api = parse(BASE).expect("parses").api;
    assert_eq!(api.tls, None);
    assert_eq!(api.read_listen, None);
    assert_eq!(api.header_timeout, Duration::from_secs(10));
}

#[test]
fn api_tls_names_its_files_and_client_ca_is_optional() {
    let api = parse(&format!("{BASE}read_listen = \"10.0.1.1:9469\"\n{TLS}"))
        .expect("parses")
        .api;
    assert_eq!(api.read_listen, Some("10.0.1.1:9469".parse().unwrap()));
    assert_eq!(
        api.tls,
        Some(ApiTls {
            cert_file: "/etc/vipx/tls/api.pem".into(),
            key_file: "/etc/vipx/tls/api.key".into(),
            ca_file: "/etc/vipx/tls/ca.pem".into(),
            client_ca_file: None,
        })
    );
    let mutual = parse(&format!(
        "{BASE}{TLS}client_ca_file = \"/etc/vipx/tls/clients.pem\"\n"
    ))
    .expect("parses")
    .api;
    assert_eq!(
        mutual.tls.and_then(|t| t.client_ca_file),
        Some("/etc/vipx/tls/clients.pem".into())
    );
}

#[test]
fn a_bad_key_in_api_tls_names_file_line_and_column() {
    let text = format!("{BASE}{TLS}  password = \"x\"\n");
    let err = error_of(&text);
    let line = line_of(&text, "  password");
    assert!(
        err.starts_with(&format!("/etc/vipx/vipx.toml:{line}:3: ")),
        "{err}"
    );
    assert!(err.contains("unknown field `password`"), "{err}");
    let missing = format!("{BASE}\n[api.tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n");
    let err = error_of(&missing);
    assert!(err.contains("missing field `ca_file`"), "{err}");
    assert!(err.starts_with("/etc/vipx/vipx.toml:"), "located: {err}");
}

#[test]
fn an_empty_path_or_a_read_listen_on_listen_points_at_its_line() {
    // A [sync.tls] key_file before it: the error points at [api.tls]'s.
    let sync = "\n[sync]\nlisten = \"10.0.0.1:9470\"\nsecret_file = \"/s\"\n\n[sync.tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\nca_file = \"/a\"\n";
    let text = format!("{BASE}{sync}{}", TLS.replace("/etc/vipx/tls/api.key", ""));
    let err = error_of(&text);
    let line = line_of(&text, "key_file = \"\"");
    assert!(
        err.starts_with(&format!(
            "/etc/vipx/vipx.toml:{line}:1: api.tls.key_file: a path is needed"
        )),
        "{err}"
    );
    let text = format!("{BASE}read_listen = \"10.0.0.1:9469\"\n");
    let err = error_of(&text);
    let line = line_of(&text, "read_listen");
    assert!(
        err.starts_with(&format!(
            "/etc/vipx/vipx.toml:{line}:1: api.read_listen: 10.0.0.1:9469 is api.listen already"
        )),
        "{err}"
    );
    let text = format!("{BASE}header_timeout = \"0s\"\n");
    let err = error_of(&text);
    assert!(
        err.contains("api.header_timeout must be more than 0"),
        "{err}"
    );
}

#[test]
fn the_examples_commented_api_tls_and_read_listen_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vipx.toml");
    let example = std::fs::read_to_string(path).expect("read the example");
    let uncomment = |from: &str| -> String {
        let start = example.find(from).expect("in the example");
        example[start..]
            .lines()
            .map_while(|line| line.strip_prefix("# "))
            .filter(|line| line.starts_with('[') || line.contains(" = "))
            .map(|line| format!("{}\n", line.split("  #").next().unwrap_or(line)))
            .collect()
    };
    let read_listen = uncomment("# read_listen = ");
    let tls = uncomment("# [api.tls]\n");
    let api = parse(&format!("{BASE}{read_listen}{tls}"))
        .expect("the example's [api] keys parse")
        .api;
    assert_eq!(api.read_listen, Some("10.0.2.11:9469".parse().unwrap()));
    let tls = api.tls.expect("[api.tls]");
    assert_eq!(tls.ca_file, Path::new("/etc/vipx/tls/ca.pem"));
    assert_eq!(tls.client_ca_file, Some("/etc/vipx/tls/ca.pem".into()));
}
