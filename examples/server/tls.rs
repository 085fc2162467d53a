//! `--tls`: HTTPS with rustls (ring provider), a development certificate made at start or PEM
//! files, and an accept loop on tokio-rustls + hyper-util that gives every request the peer
//! address (axum's `ConnectInfo`, for the per-IP limiter) and `Scheme::Https` (for the HTTPS
//! redirect and HSTS).

use std::{path::Path, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, http::Request};
use battlement::net::Scheme;
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Service, service_fn};

/// The longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS acceptor: the given PEM certificate chain and key, or a self-signed development
/// certificate for `localhost` and `127.0.0.1` made now (its PEM is written to the temporary
/// directory so that `curl --cacert` can check it).
pub(crate) fn acceptor(files: Option<(&Path, &Path)>) -> Result<TlsAcceptor, String> {
    let (certs, key) = match files {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
            if certs.is_empty() {
                return Err(format!("--cert {}: no certificate", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--key {}: {e}", key.display()))?;
            println!("TLS: certificate {}", cert.display());
            (certs, key)
        }
        None => {
            let made = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ])
            .map_err(|e| format!("cannot make a development certificate: {e}"))?;
            match write_dev_cert(&std::env::temp_dir(), &made.cert.pem()) {
                Ok(path) => println!(
                    "TLS: self-signed development certificate for localhost and 127.0.0.1 \
                     (curl -k, or curl --cacert {})",
                    path.display()
                ),
                Err(e) => println!(
                    "TLS: self-signed development certificate for localhost and 127.0.0.1 \
                     (curl -k; not written to {}: {e})",
                    std::env::temp_dir().display()
                ),
            }
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
            (vec![made.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate or key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes this run's development certificate to a file of its own in `dir`:
/// `battlement-dev-cert-<pid>-<random>.pem`, created new (never an existing file or a link
/// someone else put there), so concurrent `--tls` runs never overwrite each other's
/// certificate and `curl --cacert` checks the one the server it talks to presents.
fn write_dev_cert(dir: &Path, pem: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write as _;
    let mut last = None;
    // A few tries: a name is taken only if a file with this pid and random suffix exists.
    for _ in 0..8 {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(std::io::Error::other)?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(
            "battlement-dev-cert-{}-{suffix}.pem",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(pem.as_bytes())?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free file name")))
}

/// Accepts TLS connections forever, each served on its own task (HTTP/1.1 or HTTP/2 by ALPN).
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    timeouts: crate::serve::Timeouts,
) {
    // The same connection timeouts as the plain listener.
    let builder = Arc::new(crate::serve::builder(timeouts));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "TLS listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // What `into_make_service_with_connect_info` does on the plain listener, plus the
            // scheme: this connection is HTTPS.
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(Scheme::Https);
                app.clone().call(req)
            });
            let served = crate::serve::serve_connection(
                &builder,
                TokioIo::new(stream),
                TowerToHyperService::new(service),
                timeouts,
                std::future::pending(),
            )
            .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs in the same directory get two files, each with its own certificate, and a
    /// file already at a name is never overwritten.
    #[test]
    fn each_run_writes_its_own_certificate_file() {
        let dir = std::env::temp_dir().join(format!("battlement-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = write_dev_cert(&dir, "cert A").unwrap();
        let b = write_dev_cert(&dir, "cert B").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "cert A");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "cert B");
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("battlement-dev-cert-{}-", std::process::id())),
            "{name}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
