//! The TLS files of `[sync.tls]`: what loads, and the error each bad file
//! gives (naming the key and the file, never what the file holds).

use std::path::Path;

use super::*;
use crate::tls::test_certs::{ca, node, write};

/// Writes the three files in `dir` and points `[sync.tls]` at them.
fn files(dir: &Path, cert: &str, key: &str, ca: &str) -> SyncTls {
    SyncTls {
        cert_file: write(dir, "node.pem", cert),
        key_file: write(dir, "node.key", key),
        ca_file: write(dir, "ca.pem", ca),
    }
}

const LISTEN: &str = "127.0.0.1:9470";

fn error_of(files: &SyncTls, listen: &str) -> String {
    Tls::load(files, listen.parse().expect("addr"))
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_node_certificate_of_the_cluster_ca_naming_its_ip_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "127.0.0.1");
    let files = files(dir.path(), &cert, &key, &ca_pem);
    let tls = Tls::load(&files, LISTEN.parse().expect("addr")).expect("loads");
    assert_eq!(
        format!("{tls:?}"),
        "Tls(TLS 1.3, mutual)",
        "nothing of the key"
    );
}

#[test]
fn a_missing_file_is_named_with_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "127.0.0.1");
    let mut files = files(dir.path(), &cert, &key, &ca_pem);
    files.ca_file = dir.path().join("nowhere.pem");
    let err = error_of(&files, LISTEN);
    assert!(err.starts_with("sync.tls.ca_file "), "{err}");
    assert!(err.contains("nowhere.pem: cannot read"), "{err}");
}

#[test]
fn a_file_without_what_it_should_hold_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "127.0.0.1");
    // The key where the certificate should be, and the other way round.
    let swapped = files(dir.path(), &key, &cert, &ca_pem);
    let err = error_of(&swapped, LISTEN);
    assert!(
        err.starts_with("sync.tls.cert_file ") && err.contains("node.pem: no certificate"),
        "{err}"
    );
    std::fs::write(&swapped.cert_file, &cert).expect("write");
    let err = error_of(&swapped, LISTEN);
    assert!(
        err.starts_with("sync.tls.key_file ") && err.contains("node.key: no private key"),
        "{err}"
    );
    std::fs::write(&swapped.ca_file, "not PEM at all\n").expect("write");
    std::fs::write(&swapped.key_file, &key).expect("write");
    let err = error_of(&swapped, LISTEN);
    assert!(
        err.starts_with("sync.tls.ca_file ") && err.contains("ca.pem: no certificate"),
        "{err}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_and_not_shown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, _) = node(&ca, "127.0.0.1");
    let (_, other_key) = node(&ca, "127.0.0.1");
    let files = files(dir.path(), &cert, &other_key, &ca_pem);
    let err = error_of(&files, LISTEN);
    assert!(
        err.contains("node.key is not the key of the certificate in sync.tls.cert_file"),
        "{err}"
    );
    let body = other_key.lines().nth(1).expect("a line of base64");
    assert!(!err.contains(body), "the key is not in the error: {err}");
}

#[test]
fn a_certificate_of_another_ca_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, _) = ca();
    let (_, other_ca) = ca();
    let (cert, key) = node(&other_ca, "127.0.0.1");
    let files = files(dir.path(), &cert, &key, &ca_pem);
    let err = error_of(&files, LISTEN);
    assert!(
        err.starts_with("sync.tls.cert_file ")
            && err.contains("refused by the CA of sync.tls.ca_file"),
        "{err}"
    );
}

#[test]
fn a_certificate_must_name_the_nodes_sync_ip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, ca) = ca();
    let (cert, key) = node(&ca, "10.0.0.1");
    let files = files(dir.path(), &cert, &key, &ca_pem);
    let err = error_of(&files, "10.0.0.2:9470");
    assert!(
        err.contains("does not name 10.0.0.2 (this node's sync.listen)"),
        "{err}"
    );
    Tls::load(&files, "10.0.0.1:9470".parse().expect("addr")).expect("its own address");
    Tls::load(&files, "0.0.0.0:9470".parse().expect("addr"))
        .expect("a wildcard listen cannot be checked: the peers check the address they dial");
}
