//! The certificate chain and private key files of `AMAL_TLS_CERT` and
//! `AMAL_TLS_KEY`: read and checked here, once for `config check` and the
//! start of `serve`, and again on every reload by [`crate::tls`].

use std::path::Path;

use tokio_rustls::rustls::{self, pki_types, sign::CertifiedKey};

pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Read and check a certificate chain and its private key. The error names
/// the setting at fault and never holds key material.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, (&'static str, String)> {
    use pki_types::pem::PemObject;
    use pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ("AMAL_TLS_CERT", format!("cannot be read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                "AMAL_TLS_CERT",
                format!("is not a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(("AMAL_TLS_CERT", "holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        (
            "AMAL_TLS_KEY",
            format!("holds no usable PEM private key: {e}"),
        )
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        (
            "AMAL_TLS_KEY",
            format!("does not match the certificate or is not supported: {e}"),
        )
    })
}

/// Validate the files as `amal config check` and `serve` do at start.
pub fn check_files(cert: &Path, key: &Path) -> Result<(), (&'static str, String)> {
    load(cert, key).map(|_| ())
}
