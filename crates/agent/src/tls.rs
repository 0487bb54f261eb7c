//! Mutual TLS between peers (rustls): every node presents a certificate
//! from the cluster CA and checks the other side's against it. The three
//! files (CA bundle, certificate chain, key) are read again when any of
//! them changes, so cert-manager or a rotated Secret takes effect without
//! a restart; a set that does not load is refused and the last good one
//! stays in use.
//!
//! What is checked is membership of the cluster, not a name: a peer is
//! dialled by IP from the roster, so a server certificate need not carry
//! that IP (a name mismatch is accepted, everything else about the chain
//! is not: CA, validity period, key usage). On the peer port a client
//! certificate is optional at the handshake, so health checks and metrics
//! scrapers can speak TLS without one; every `/peer/` route refuses a
//! connection that did not present a valid one ([`PeerCertificate`]).

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("peer TLS: {0}")]
pub struct TlsError(String);

/// Whether the connection a request came in on presented a certificate
/// the cluster CA signed (a request extension on the peer port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub bool);

/// The three files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM bundle of the cluster CA.
    pub ca: PathBuf,
    /// PEM chain of this node's certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What one good set of files gives.
struct Loaded {
    key: Arc<CertifiedKey>,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<WebPkiServerVerifier>,
}

/// The live TLS material of a node, reloaded by [`PeerTls::reload`].
pub struct PeerTls {
    files: TlsFiles,
    current: ArcSwap<Loaded>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
    /// The signature algorithms both sides accept (the provider's).
    algs: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerTls({:?})", self.files)
    }
}

fn err(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{what} {}: {e}", path.display()))
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| err("CA bundle", &files.ca, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("CA bundle", &files.ca, e))?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(err("CA bundle", &files.ca, "no usable certificate"));
    }
    let roots = Arc::new(roots);
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err("certificate", &files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("certificate", &files.cert, e))?;
    if chain.is_empty() {
        return Err(err("certificate", &files.cert, "no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| err("key", &files.key, e))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err("key", &files.key, e))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().map_err(|e| {
        err(
            "key",
            &files.key,
            format!("does not match the certificate: {e}"),
        )
    })?;
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| err("CA bundle", &files.ca, e))?;
    let servers = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| err("CA bundle", &files.ca, e))?;
    Ok(Loaded {
        key: Arc::new(key),
        clients,
        servers,
    })
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl PeerTls {
    /// Loads the files; an error names the file and what is wrong.
    pub fn new(files: TlsFiles) -> Result<Arc<PeerTls>, TlsError> {
        let loaded = load(&files)?;
        Ok(Arc::new(PeerTls {
            stamps: Mutex::new(stamps(&files)),
            files,
            current: ArcSwap::from_pointee(loaded),
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }))
    }

    /// A TLS 1.2 handshake signature, checked as the webpki verifiers do.
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    /// A TLS 1.3 handshake signature, checked as the webpki verifiers do.
    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    /// Loads the files again if any changed since the last look: true if
    /// a new set is in use. A set that does not load is logged and the
    /// old one kept.
    pub fn reload(&self) -> bool {
        let now = stamps(&self.files);
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match load(&self.files) {
            Ok(loaded) => {
                self.current.store(Arc::new(loaded));
                tracing::info!("peer TLS: certificate, key or CA reloaded");
                true
            }
            Err(e) => {
                tracing::error!("{e}; keeping the certificate in use");
                false
            }
        }
    }

    /// The peer port's server side.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(Arc::new(Clients(self.clone())))
            .with_cert_resolver(self.clone());
        // A resumed session would skip the client certificate's check:
        // after a rotation or expiry it must not keep a peer in.
        let mut config = config;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The client side every request to a peer uses.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Servers(self.clone())))
            .with_client_cert_resolver(self.clone());
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for PeerTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

impl ResolvesClientCert for PeerTls {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The handshake-signature methods both verifiers share: the provider's
/// algorithms, whichever CA is in use.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.tls12(m, c, d)
        }

        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.tls13(m, c, d)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.algs.supported_schemes()
        }
    };
}

/// Checks client certificates against the CA in use now.
#[derive(Debug)]
struct Clients(Arc<PeerTls>);

impl ClientCertVerifier for Clients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let v = self.0.current.load().clients.clone();
        v.verify_client_cert(end_entity, intermediates, now)
    }

    handshake_signatures!();
}

/// Checks server certificates against the CA in use now, accepting a
/// certificate that does not name the address dialled (see the module).
#[derive(Debug)]
struct Servers(Arc<PeerTls>);

impl ServerCertVerifier for Servers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let v = self.0.current.load().servers.clone();
        match v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    handshake_signatures!();
}
