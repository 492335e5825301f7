//! Certificates made at test time (rcgen): a CA, and node certificates it
//! signs, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA: its certificate (PEM) and what signs with it.
pub fn ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("a CA key");
    let cert = params.self_signed(&key).expect("the CA signs itself");
    (cert.pem(), Issuer::new(params, key))
}

/// A node certificate naming `ip`, signed by `ca`: (certificate, key) PEM.
pub fn node(ca: &Issuer<'static, KeyPair>, ip: &str) -> (String, String) {
    let key = KeyPair::generate().expect("a node key");
    let params = CertificateParams::new(vec![ip.to_owned()]).expect("an IP SAN");
    let cert = params.signed_by(&key, ca).expect("the CA signs it");
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test certificate file");
    path
}
