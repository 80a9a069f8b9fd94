//! A throw-away PKI for the edgeHub double: an "edge CA" (what the workload API hands out as
//! the trust bundle) and a server certificate for the gateway host signed by it.
//!
//! Every `TestPki::new` makes a fresh, unrelated CA, so two instances give the
//! "certificate from another CA is refused" case. All rustls configs are built with the ring
//! provider explicitly: the crate does not enable aws-lc-rs, so rustls has no process default.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// Gateway host name used by the tests (`IOTEDGE_GATEWAYHOSTNAME`). It does not resolve:
/// connect to 127.0.0.1 and use it as the TLS server name, or use `"localhost"` (also in the
/// certificate) with clients that resolve the host they verify.
pub const GATEWAY_HOST: &str = "edgehub.test";

/// The ring crypto provider; use it for every rustls config in tests.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server certificate chain and its key, ready for a rustls `ServerConfig`.
pub struct ServerIdentity {
    /// Leaf first, then the CA (as edgeHub sends its chain).
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the leaf key.
    pub key_pkcs8: Vec<u8>,
    /// PEM of the leaf certificate alone.
    pub cert_pem: String,
}

impl ServerIdentity {
    /// A rustls server config offering TLS 1.2 and 1.3.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.build(false)
    }

    /// A rustls server config offering TLS 1.2 only (what older edgeHub images accept).
    pub fn server_config_tls12_only(&self) -> Arc<ServerConfig> {
        self.build(true)
    }

    fn build(&self, tls12_only: bool) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(ring_provider());
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .expect("ring supports the default protocol versions");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let config = builder
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("rcgen produced a matching certificate and key");
        Arc::new(config)
    }
}

/// A test edge CA plus the edgeHub server identity it signed.
pub struct TestPki {
    /// The gateway host name the server certificate is issued for (CN and first SAN).
    pub gateway_host: String,
    /// PEM of the CA certificate: the workload API's trust bundle.
    pub ca_pem: String,
    /// DER of the CA certificate.
    pub ca_der: CertificateDer<'static>,
    /// Server identity: CN = gateway host; SANs = gateway host, `edgeHub`, `localhost`, 127.0.0.1.
    pub server: ServerIdentity,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// A fresh CA (CA:true, unrelated to any other instance) and a server certificate for
    /// `gateway_host` signed by it.
    pub fn new(gateway_host: &str) -> TestPki {
        let ca_key = KeyPair::generate().expect("ring generates a P-256 key");
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "edgeguard test edge CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = date_time_ymd(2020, 1, 1);
        ca_params.not_after = date_time_ymd(2100, 1, 1);
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-signing a CA with generated parameters works");
        let ca_pem = ca_cert.pem();
        let ca_der = ca_cert.der().clone();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut pki = TestPki {
            gateway_host: gateway_host.to_string(),
            ca_pem,
            ca_der,
            server: ServerIdentity {
                chain: Vec::new(),
                key_pkcs8: Vec::new(),
                cert_pem: String::new(),
            },
            issuer,
        };
        pki.server = pki.issue_server(
            gateway_host,
            &[gateway_host, "edgeHub", "localhost", "127.0.0.1"],
            false,
        );
        pki
    }

    /// Issues another server identity from this CA: `cn` as common name, `sans` as DNS names
    /// or IP addresses; `expired` makes it valid only in 2020. For the "wrong host name" and
    /// "expired server certificate" cases.
    pub fn issue_server(&self, cn: &str, sans: &[&str], expired: bool) -> ServerIdentity {
        let key = KeyPair::generate().expect("ring generates a P-256 key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("test SANs are valid names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        } else {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2099, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a server certificate with the test CA works");
        ServerIdentity {
            cert_pem: cert.pem(),
            chain: vec![cert.der().clone(), self.ca_der.clone()],
            key_pkcs8: key.serialize_der(),
        }
    }

    /// The edgeHub server config (TLS 1.2 and 1.3) for `EdgeHubConfig::tls`.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.server_config()
    }

    /// Roots containing only this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("the generated CA certificate parses");
        roots
    }

    /// A client config trusting only this CA (for the doubles' self-tests and for plain
    /// clients in tests; the production client builds its own from the trust bundle).
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth()
    }
}
