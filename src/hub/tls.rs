//! TLS client configuration: trust only the certificates we were told to (the edge CA from the
//! workload API, the simulator's CA file, or the system's public roots when talking to IoT Hub
//! directly). Always built with rustls' ring provider: the crate has no other, and relying on a
//! process-wide default would panic if none were installed.

use super::Error;
use super::env::Trust;
use super::workload::WorkloadClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// Where Debian, Alpine, Fedora and friends keep their CA bundle; `SSL_CERT_FILE` first.
const PUBLIC_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// A client config whose only roots are the certificates in `pem` (`what` names the source in
/// errors). Certificates that do not parse are skipped; none usable is an error.
pub fn client_config(pem: &[u8], what: &str) -> Result<(Arc<ClientConfig>, usize), Error> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::NoCertificates {
            what: what.to_string(),
        });
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok((Arc::new(config), added))
}

/// Loads the trusted certificates for `trust` now (the trust bundle is fetched again for every
/// connection: the edge CA can rotate). Returns the config and how many roots it holds.
pub async fn load(
    trust: &Trust,
    workload: Option<&WorkloadClient>,
) -> Result<(Arc<ClientConfig>, usize), Error> {
    match trust {
        Trust::WorkloadBundle => {
            let client = workload.ok_or_else(|| Error::NoCertificates {
                what: "the workload API trust bundle (no workload API configured)".into(),
            })?;
            let pem = client.trust_bundle().await?;
            client_config(pem.as_bytes(), "the workload API trust bundle")
        }
        Trust::File(path) => {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|source| Error::CaFile {
                    path: path.clone(),
                    source,
                })?;
            client_config(&pem, path)
        }
        Trust::PublicRoots => {
            let from_env = std::env::var("SSL_CERT_FILE").ok();
            let mut last = None;
            for path in from_env.iter().map(String::as_str).chain(PUBLIC_BUNDLES) {
                match tokio::fs::read(path).await {
                    Ok(pem) => return client_config(&pem, path),
                    Err(source) => {
                        last = Some(Error::CaFile {
                            path: path.to_string(),
                            source,
                        })
                    }
                }
            }
            Err(last.unwrap_or_else(|| Error::NoCertificates {
                what: "the system CA bundle".into(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn trusts_the_certificates_given() {
        let bundle = format!("{}\n{}", ca_pem(), ca_pem());
        let (_, n) = client_config(bundle.as_bytes(), "test").unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for pem in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n",
        ] {
            let e = client_config(pem, "the bundle").unwrap_err();
            assert!(matches!(e, Error::NoCertificates { .. }), "{e:?}");
            assert!(!e.is_transient());
        }
    }

    #[tokio::test]
    async fn reads_files_and_public_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca_pem()).unwrap();
        let trust = Trust::File(path.display().to_string());
        assert_eq!(load(&trust, None).await.unwrap().1, 1);
        let missing = Trust::File("/nonexistent/ca.pem".into());
        assert!(matches!(
            load(&missing, None).await.unwrap_err(),
            Error::CaFile { .. }
        ));
        assert!(load(&Trust::WorkloadBundle, None).await.is_err());
        // The VM has Debian's bundle.
        if std::path::Path::new(PUBLIC_BUNDLES[0]).exists() {
            assert!(load(&Trust::PublicRoots, None).await.unwrap().1 > 10);
        }
    }
}
