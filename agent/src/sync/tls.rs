//! TLS on the replication connections (`[sync.tls]`): TLS 1.3 only, through
//! rustls with the ring provider, and mutual: the accepting side requires a
//! client certificate the cluster's CA signed, the connecting side checks
//! that the peer's certificate, signed by the same CA, names the address it
//! dialled (peers are reached by IP: a certificate carries its node's sync
//! IP as a subjectAltName). The cluster secret's handshake still runs inside.
//!
//! The files are read once, at start (and by `check-config`): each error
//! names the key and the file, never what the file holds.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, PrivateKeyDer, ServerName, UnixTime,
        pem::{self, PemObject as _},
    },
    server::WebPkiClientVerifier,
    sign::{CertifiedKey, SingleCertAndKey},
    version::TLS13,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::config::SyncTls;

/// Why the TLS files cannot be used. Each names the `[sync.tls]` key and
/// its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sync.tls.{key} {path}: cannot read: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sync.tls.{key} {path}: not PEM: {reason}")]
    Pem {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("sync.tls.{key} {path}: no certificate in it (a PEM \"CERTIFICATE\" block)")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error(
        "sync.tls.key_file {path}: no private key in it (a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
    )]
    NoKey { path: PathBuf },
    #[error("sync.tls.key_file {path}: the key cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "sync.tls.key_file {key} is not the key of the certificate in sync.tls.cert_file {cert}"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("sync.tls.cert_file {path}: not a certificate that parses: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("sync.tls.ca_file {path}: not a CA certificate rustls can trust: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("sync.tls.cert_file {cert}: refused by the CA of sync.tls.ca_file {ca}: {reason}")]
    NotTrusted {
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error(
        "sync.tls.cert_file {cert}: does not name {ip} (this node's sync.listen) as a subjectAltName; peers check it: {reason}"
    )]
    WrongAddress {
        cert: PathBuf,
        ip: IpAddr,
        reason: String,
    },
    #[error("sync.tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Both ends of TLS for this node: the acceptor for the peers that connect
/// and the connector for the peers it connects to.
pub struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configurations hold the private key: never shown.
        f.write_str("Tls(TLS 1.3, mutual)")
    }
}

impl Tls {
    /// Reads the files of `[sync.tls]` and checks them: a certificate and
    /// its key, a CA that signed it and, when `listen` names an address,
    /// a certificate that names it.
    pub fn load(files: &SyncTls, listen: SocketAddr) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates("cert_file", &files.cert_file)?;
        let key = private_key(&files.key_file)?;
        let roots = Arc::new(roots(&files.ca_file)?);
        let certified = certified_key(files, chain, key, &provider)?;
        let clients =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|err| bad_ca(&files.ca_file, err))?;
        let servers =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|err| bad_ca(&files.ca_file, err))?;
        check_own(files, &certified, listen.ip(), &*clients, &*servers)?;
        let resolved = Arc::new(SingleCertAndKey::from(certified));
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&TLS13])?
            .with_client_cert_verifier(clients)
            .with_cert_resolver(Arc::clone(&resolved) as _);
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13])?
            .with_webpki_verifier(servers)
            .with_client_cert_resolver(resolved);
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// TLS to `peer`, whose certificate must name its IP address.
    pub async fn connect(
        &self,
        peer: SocketAddr,
        stream: TcpStream,
    ) -> io::Result<client::TlsStream<TcpStream>> {
        self.connector
            .connect(ServerName::IpAddress(peer.ip().into()), stream)
            .await
    }

    /// TLS from a peer, which must show a certificate of the cluster's CA.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<server::TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

/// Whether an I/O error of a replication connection is a TLS failure (a
/// certificate refused, an alert, a peer that does not speak TLS).
pub fn is_tls_failure(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file, at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            key,
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file. What a bad file holds is not
/// repeated: it may be a key.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("key_file", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        _ => TlsError::Pem {
            key: "key_file",
            path: path.to_owned(),
            reason: "a PEM block does not decode".to_owned(),
        },
    })
}

/// The trust anchors of the CA file.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca_file", path)? {
        roots.add(cert).map_err(|err| bad_ca(path, err))?;
    }
    Ok(roots)
}

/// The CA file cannot be used.
fn bad_ca(path: &Path, err: impl std::fmt::Display) -> TlsError {
    TlsError::BadCa {
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

/// The certificate with its key, once the key is known to be its own.
fn certified_key(
    files: &SyncTls,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    CertifiedKey::from_der(chain, key, provider).map_err(|err| match &err {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
        },
        rustls::Error::InvalidCertificate(_) => TlsError::BadCertificate {
            path: files.cert_file.clone(),
            reason: err.to_string(),
        },
        _ => TlsError::BadKey {
            path: files.key_file.clone(),
            reason: err.to_string(),
        },
    })
}

/// This node's certificate as its peers will check it: signed by the CA,
/// fit for a client and, when this node listens on one address, naming it.
fn check_own(
    files: &SyncTls,
    certified: &CertifiedKey,
    ip: IpAddr,
    clients: &dyn rustls::server::danger::ClientCertVerifier,
    servers: &dyn rustls::client::danger::ServerCertVerifier,
) -> Result<(), TlsError> {
    let (end_entity, intermediates) = certified
        .cert
        .split_first()
        .expect("certificates() returns at least one");
    let now = UnixTime::now();
    clients
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|err| TlsError::NotTrusted {
            cert: files.cert_file.clone(),
            ca: files.ca_file.clone(),
            reason: err.to_string(),
        })?;
    if ip.is_unspecified() {
        return Ok(());
    }
    let name = ServerName::IpAddress(ip.into());
    servers
        .verify_server_cert(end_entity, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|err| match err {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            ) => TlsError::WrongAddress {
                cert: files.cert_file.clone(),
                ip,
                reason: err.to_string(),
            },
            other => TlsError::NotTrusted {
                cert: files.cert_file.clone(),
                ca: files.ca_file.clone(),
                reason: other.to_string(),
            },
        })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
