//! Certificates for tests: a fresh CA and leaves it signs.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::{Arc, OnceLock};
use tokio_rustls::TlsAcceptor;

/// A test CA with a leaf certificate for `localhost`: its acceptor, its DER and its PEM.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    localhost: TlsAcceptor,
}

impl TestCa {
    /// A fresh CA named `name`, with a `localhost` leaf.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        let localhost = acceptor_signed_by("localhost", &cert, &key);
        TestCa {
            cert,
            key,
            localhost,
        }
    }

    /// One CA for the whole test process.
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| TestCa::new("hallway test CA"))
    }

    /// A TLS acceptor presenting the `localhost` leaf.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.localhost.clone()
    }

    /// A TLS acceptor presenting a fresh leaf for `host`.
    pub fn acceptor_for(&self, host: &str) -> TlsAcceptor {
        acceptor_signed_by(host, &self.cert, &self.key)
    }

    /// The CA certificate, to trust it.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA certificate as PEM, for `--ca-file`.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// An acceptor presenting a fresh leaf for `host` signed by `ca`.
fn acceptor_signed_by(host: &str, ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair) -> TlsAcceptor {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec![host.to_owned()])
        .expect("leaf params")
        .signed_by(&key, ca, ca_key)
        .expect("leaf cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("TLS config");
    TlsAcceptor::from(Arc::new(config))
}
