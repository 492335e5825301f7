//! `[api.tls]` files as the agent loads them, and the API's URLs.

use std::path::Path;

use super::*;
use crate::tls::test_certs::{ca, node, write};

fn api(dir: &Path, listen: &str, cert: &str, key: &str, ca: &str) -> ApiConfig {
    ApiConfig {
        listen: listen.parse().expect("addr"),
        tls: Some(ApiTls {
            cert_file: write(dir, "api.pem", cert),
            key_file: write(dir, "api.key", key),
            ca_file: write(dir, "ca.pem", ca),
            client_ca_file: None,
        }),
        ..ApiConfig::default()
    }
}

fn error_of(api: &ApiConfig) -> String {
    acceptor(api).err().expect("refused").to_string()
}

#[test]
fn the_certificate_must_name_a_specific_listen_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "10.0.0.1");
    let mut api = api(dir.path(), "10.0.0.2:9469", &cert, &key, &ca_pem);
    let err = error_of(&api);
    assert!(
        err.starts_with("api.tls.cert_file ")
            && err.contains("does not name 10.0.0.2 (this node's api.listen)"),
        "{err}"
    );
    api.listen = "10.0.0.1:9469".parse().expect("addr");
    assert!(acceptor(&api).expect("its own address").is_some());
    api.listen = "0.0.0.0:9469".parse().expect("addr");
    assert!(acceptor(&api).expect("a wildcard: callers check").is_some());
}

#[test]
fn files_that_do_not_fit_are_named_with_their_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "127.0.0.1");
    let mut api = api(dir.path(), "127.0.0.1:9469", &cert, &key, &ca_pem);
    let tls = api.tls.as_mut().expect("tls");
    // A client CA that did not sign this node's certificate: its peers,
    // with the same client CA, would refuse it.
    let (other_ca, _) = crate::tls::test_certs::ca();
    tls.client_ca_file = Some(write(dir.path(), "clients.pem", &other_ca));
    let err = error_of(&api);
    assert!(
        err.contains("refused by the CA of api.tls.client_ca_file"),
        "{err}"
    );
    let tls = api.tls.as_mut().expect("tls");
    tls.client_ca_file = None;
    tls.key_file = dir.path().join("missing.key");
    let err = error_of(&api);
    assert!(
        err.starts_with("api.tls.key_file ") && err.contains("missing.key: cannot read"),
        "{err}"
    );
    let err = agent_client(&api, Duration::from_secs(1))
        .expect_err("the client needs the key too")
        .to_string();
    assert!(err.starts_with("api.tls.key_file "), "{err}");
    // The key is never part of an error.
    let tls = api.tls.as_mut().expect("tls");
    let (_, other_key) = node(&ca, "127.0.0.1");
    tls.key_file = write(dir.path(), "other.key", &other_key);
    let err = error_of(&api);
    assert!(
        err.contains("is not the key of the certificate in api.tls.cert_file"),
        "{err}"
    );
    let body = other_key.lines().nth(1).expect("a line of base64");
    assert!(!err.contains(body), "{err}");
}

#[test]
fn the_api_url_is_https_with_tls_and_a_wildcard_is_reached_through_loopback() {
    let plain = ApiConfig::default();
    let url = |api: &ApiConfig, addr: &str| api_base_url(api, addr.parse().expect("addr"));
    assert_eq!(url(&plain, "0.0.0.0:9469"), "http://127.0.0.1:9469");
    assert_eq!(url(&plain, "[::]:9469"), "http://[::1]:9469");
    assert_eq!(url(&plain, "10.1.2.3:80"), "http://10.1.2.3:80");
    let tls = ApiConfig {
        tls: Some(ApiTls {
            cert_file: "/c".into(),
            key_file: "/k".into(),
            ca_file: "/a".into(),
            client_ca_file: None,
        }),
        ..ApiConfig::default()
    };
    assert_eq!(url(&tls, "10.1.2.3:9469"), "https://10.1.2.3:9469");
    assert_eq!(url(&tls, "[::]:9469"), "https://[::1]:9469");
}
