//! HTTPS without a reverse proxy. With `AMAL_TLS_CERT` and `AMAL_TLS_KEY`
//! (PEM files), `amal serve` terminates TLS itself with rustls (the `ring`
//! provider; no OpenSSL), sends `Strict-Transport-Security` on every
//! response, and reloads the certificate and key on SIGHUP without closing
//! the listening socket: connections already open keep their session, every
//! new handshake gets the new certificate. A reload that fails (a missing
//! file, a key that does not match) keeps the previous certificate and logs
//! why.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{header, HeaderValue};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::{self, server::ClientHello, sign::CertifiedKey};
use tokio_rustls::TlsAcceptor;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::TlsFiles;
use crate::pem::{load, provider};
use crate::state::AppState;

/// The HSTS policy sent on every HTTPS response.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// A handshake not finished in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the backlog.
const MAX_HANDSHAKES: usize = 512;

/// The certificate in use, swapped in place on reload.
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    pub fn open(files: &TlsFiles) -> anyhow::Result<Arc<CertStore>> {
        let ck = load(&files.cert, &files.key).map_err(|(s, m)| anyhow::anyhow!("{s}: {m}"))?;
        Ok(Arc::new(CertStore {
            cert: files.cert.clone(),
            key: files.key.clone(),
            current: RwLock::new(Arc::new(ck)),
        }))
    }

    /// Read the files again; keep the old certificate if they are not valid.
    pub fn reload(&self) -> Result<(), String> {
        let ck = load(&self.cert, &self.key).map_err(|(s, m)| format!("{s}: {m}"))?;
        let mut cur = self
            .current
            .write()
            .map_err(|_| "certificate lock poisoned".to_string())?;
        *cur = Arc::new(ck);
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

fn acceptor(store: Arc<CertStore>) -> anyhow::Result<TlsAcceptor> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

type Accepted = (tokio_rustls::server::TlsStream<TcpStream>, SocketAddr);

/// A listener whose connections arrive already through the TLS handshake.
/// Handshakes run in their own tasks, so a slow client never holds up the
/// others.
struct TlsListener {
    rx: mpsc::Receiver<Accepted>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel::<Accepted>(64);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, addr) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serve HTTPS on `listener` until `shutdown` resolves, then drain
/// in-flight requests (the HTTPS counterpart of [`crate::serve`]).
pub async fn serve_tls(
    state: AppState,
    listener: TcpListener,
    certs: Arc<CertStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = crate::router(state.clone()).layer(SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    ));
    let tls = TlsListener::new(listener, acceptor(certs)?)?;
    crate::conn::serve_connections(tls, app, state.config.header_read_timeout, shutdown).await;
    state.db.close().await;
    Ok(())
}

/// Handle SIGHUP: reload the certificate when serving HTTPS; otherwise
/// only log it (so `systemctl reload` never stops the server). The handler
/// is installed before this returns.
pub fn reload_on_sighup(certs: Option<Arc<CertStore>>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &certs {
                    Some(store) => match store.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(problem) => tracing::error!(
                            problem = %problem,
                            "TLS certificate reload failed; still serving the previous certificate"
                        ),
                    },
                    None => tracing::info!("SIGHUP received; no TLS certificate to reload"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = certs;
    Ok(())
}
