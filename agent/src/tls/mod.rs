//! TLS for the agent, one place for what `[sync.tls]` and `[api.tls]`
//! share: rustls with the ring provider (aws-lc-rs would need cmake), the
//! PEM files read once (at start, and by `check-config`), and this node's
//! certificate checked against the CA its peers trust before anything is
//! served. Each error names the section's key and the file, never what the
//! file holds.
//!
//! A leaf: [`agent`] builds the API's server side and the client that
//! calls other agents' APIs (the command line, the cluster channel);
//! `sync::tls` builds the replication channel's.

pub mod agent;
#[cfg(test)]
pub(crate) mod test_certs;

use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, PrivateKeyDer, ServerName, UnixTime,
        pem::{self, PemObject as _},
    },
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    sign::CertifiedKey,
};

/// Why TLS files cannot be used. Each names the section (`sync.tls`,
/// `api.tls`), the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}.{key} {path}: cannot read: {source}")]
    Read {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{section}.{key} {path}: not PEM: {reason}")]
    Pem {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}.{key} {path}: no certificate in it (a PEM \"CERTIFICATE\" block)")]
    NoCertificate {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error(
        "{section}.key_file {path}: no private key in it (a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
    )]
    NoKey {
        section: &'static str,
        path: PathBuf,
    },
    #[error("{section}.key_file {path}: the key cannot be used: {reason}")]
    BadKey {
        section: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "{section}.key_file {key} is not the key of the certificate in {section}.cert_file {cert}"
    )]
    KeyMismatch {
        section: &'static str,
        cert: PathBuf,
        key: PathBuf,
    },
    #[error("{section}.cert_file {path}: not a certificate that parses: {reason}")]
    BadCertificate {
        section: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}.{key} {path}: not a CA certificate rustls can trust: {reason}")]
    BadCa {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}.cert_file {cert}: refused by the CA of {section}.{ca_key} {ca}: {reason}")]
    NotTrusted {
        section: &'static str,
        cert: PathBuf,
        ca_key: &'static str,
        ca: PathBuf,
        reason: String,
    },
    #[error(
        "{section}.cert_file {cert}: does not name {ip} (this node's {listen_key}) as a subjectAltName; peers check it: {reason}"
    )]
    WrongAddress {
        section: &'static str,
        cert: PathBuf,
        ip: IpAddr,
        listen_key: &'static str,
        reason: String,
    },
    #[error("the HTTP client: {reason}")]
    Client { reason: String },
    #[error("{section}: {source}")]
    Rustls {
        section: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// A TLS section of the configuration, for its errors: its name
/// (`sync.tls`) and this node's certificate and key files.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub name: &'static str,
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// The crypto of every TLS connection of the agent.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Section<'_> {
    /// An error of rustls building a configuration of this section.
    pub fn rustls(&self, source: rustls::Error) -> TlsError {
        TlsError::Rustls {
            section: self.name,
            source,
        }
    }

    /// This node's certificate (with any intermediates) and its key, once
    /// the key is known to be the certificate's own.
    pub fn identity(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain = self.certificates("cert_file", self.cert_file)?;
        let key = self.private_key()?;
        CertifiedKey::from_der(chain, key, provider).map_err(|err| match &err {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                section: self.name,
                cert: self.cert_file.to_owned(),
                key: self.key_file.to_owned(),
            },
            rustls::Error::InvalidCertificate(_) => TlsError::BadCertificate {
                section: self.name,
                path: self.cert_file.to_owned(),
                reason: err.to_string(),
            },
            _ => TlsError::BadKey {
                section: self.name,
                path: self.key_file.to_owned(),
                reason: err.to_string(),
            },
        })
    }

    /// The trust anchors of a CA file (`key` names it in errors).
    pub fn roots(&self, key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in self.certificates(key, path)? {
            roots.add(cert).map_err(|err| self.bad_ca(key, path, err))?;
        }
        Ok(Arc::new(roots))
    }

    /// What checks the servers this node calls: signed by the CA of `key`.
    pub fn server_verifier(
        &self,
        key: &'static str,
        path: &Path,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        WebPkiServerVerifier::builder_with_provider(self.roots(key, path)?, Arc::clone(provider))
            .build()
            .map_err(|err| self.bad_ca(key, path, err))
    }

    /// What checks the clients of this node: a certificate the CA of `key`
    /// signed, required.
    pub fn client_verifier(
        &self,
        key: &'static str,
        path: &Path,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        WebPkiClientVerifier::builder_with_provider(self.roots(key, path)?, Arc::clone(provider))
            .build()
            .map_err(|err| self.bad_ca(key, path, err))
    }

    /// This node's certificate as its peers check it when it connects to
    /// them: signed by the CA of `ca_key`, fit for a client.
    pub fn check_as_client(
        &self,
        own: &CertifiedKey,
        (ca_key, ca): (&'static str, &Path),
        clients: &dyn ClientCertVerifier,
    ) -> Result<(), TlsError> {
        let (end_entity, intermediates) = split(own);
        clients
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|err| self.not_trusted(ca_key, ca, err))
    }

    /// This node's certificate as its peers check it when they connect to
    /// it, when this node listens on one address (`listen_key`): signed by
    /// the CA of `ca_key` and naming that address. (With a wildcard
    /// address nothing is checked here: the peers check the address they
    /// dial.)
    pub fn check_as_server(
        &self,
        own: &CertifiedKey,
        (ca_key, ca): (&'static str, &Path),
        (listen_key, ip): (&'static str, IpAddr),
        servers: &dyn ServerCertVerifier,
    ) -> Result<(), TlsError> {
        let (end_entity, intermediates) = split(own);
        if ip.is_unspecified() {
            // No address to check: the peers check the one they dial.
            return Ok(());
        }
        let now = UnixTime::now();
        let name = ServerName::IpAddress(ip.into());
        servers
            .verify_server_cert(end_entity, intermediates, &name, &[], now)
            .map(|_| ())
            .map_err(|err| match err {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. },
                ) => TlsError::WrongAddress {
                    section: self.name,
                    cert: self.cert_file.to_owned(),
                    ip,
                    listen_key,
                    reason: err.to_string(),
                },
                other => self.not_trusted(ca_key, ca, other),
            })
    }

    fn read(&self, key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read {
            section: self.name,
            key,
            path: path.to_owned(),
            source,
        })
    }

    /// The certificates of a PEM file, at least one.
    fn certificates(
        &self,
        key: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = self.read(key, path)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TlsError::Pem {
                section: self.name,
                key,
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                section: self.name,
                key,
                path: path.to_owned(),
            });
        }
        Ok(certs)
    }

    /// The first private key of the key file. What a bad file holds is
    /// not repeated: it may be a key.
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let path = self.key_file;
        let bytes = self.read("key_file", path)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
            pem::Error::NoItemsFound => TlsError::NoKey {
                section: self.name,
                path: path.to_owned(),
            },
            _ => TlsError::Pem {
                section: self.name,
                key: "key_file",
                path: path.to_owned(),
                reason: "a PEM block does not decode".to_owned(),
            },
        })
    }

    fn bad_ca(&self, key: &'static str, path: &Path, err: impl std::fmt::Display) -> TlsError {
        TlsError::BadCa {
            section: self.name,
            key,
            path: path.to_owned(),
            reason: err.to_string(),
        }
    }

    fn not_trusted(&self, ca_key: &'static str, ca: &Path, err: rustls::Error) -> TlsError {
        TlsError::NotTrusted {
            section: self.name,
            cert: self.cert_file.to_owned(),
            ca_key,
            ca: ca.to_owned(),
            reason: err.to_string(),
        }
    }
}

fn split(own: &CertifiedKey) -> (&CertificateDer<'static>, &[CertificateDer<'static>]) {
    own.cert
        .split_first()
        .expect("Section::identity reads at least one certificate")
}

/// Whether an I/O error of a TLS connection is a TLS failure (a
/// certificate refused, an alert, a peer that does not speak TLS).
pub fn is_tls_failure(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}
