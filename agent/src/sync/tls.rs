//! TLS on the replication connections (`[sync.tls]`): TLS 1.3 only, through
//! rustls with the ring provider, and mutual: the accepting side requires a
//! client certificate the cluster's CA signed, the connecting side checks
//! that the peer's certificate, signed by the same CA, names the address it
//! dialled (peers are reached by IP: a certificate carries its node's sync
//! IP as a subjectAltName). The cluster secret's handshake still runs inside.
//!
//! The files are read once, at start (and by `check-config`): each error
//! names the key and the file, never what the file holds.

use std::{io, net::SocketAddr, sync::Arc};

use rustls::{
    ClientConfig, ServerConfig, pki_types::ServerName, sign::SingleCertAndKey, version::TLS13,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

pub use crate::tls::{TlsError, is_tls_failure};
use crate::{config::SyncTls, tls::Section};

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
        let section = Section {
            name: "sync.tls",
            cert_file: &files.cert_file,
            key_file: &files.key_file,
        };
        let provider = crate::tls::provider();
        let certified = section.identity(&provider)?;
        let ca = ("ca_file", files.ca_file.as_path());
        let clients = section.client_verifier(ca.0, ca.1, &provider)?;
        let servers = section.server_verifier(ca.0, ca.1, &provider)?;
        section.check_as_client(&certified, ca, &*clients)?;
        section.check_as_server(&certified, ca, ("sync.listen", listen.ip()), &*servers)?;
        let resolved = Arc::new(SingleCertAndKey::from(certified));
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&TLS13])
            .map_err(|err| section.rustls(err))?
            .with_client_cert_verifier(clients)
            .with_cert_resolver(Arc::clone(&resolved) as _);
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13])
            .map_err(|err| section.rustls(err))?
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

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
