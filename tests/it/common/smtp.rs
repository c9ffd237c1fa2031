//! A real SMTP server for the tests: mailin-embedded speaking SMTP over TCP on a free loopback
//! port, in a thread of the test process. It keeps every message it accepts, with its envelope.
//! It can offer STARTTLS with AUTH PLAIN, or sit behind a TLS terminator for implicit TLS, with
//! the test certificate of `tests/fixtures/tls/` (lifemap trusts its CA through `ca_file`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig, response};

/// One message as the server received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Clone, Default)]
struct Collector {
    current: Received,
    inbox: Arc<Mutex<Vec<Received>>>,
    /// The user and password AUTH accepts; every attempt is recorded in `logins`.
    account: Option<(String, String)>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Received {
            from: from.to_string(),
            to: to.to_vec(),
            data: Vec::new(),
        };
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = std::mem::take(&mut self.current);
        self.inbox.lock().expect("inbox").push(message);
        response::OK
    }

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        self.logins
            .lock()
            .expect("logins")
            .push((user.to_string(), password.to_string()));
        match &self.account {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

/// The test certificates: (CA, server certificate, server key).
pub fn tls_files() -> (PathBuf, PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// The test build links two rustls crypto providers (lettre's ring, mailin's aws-lc-rs), so the
/// server side must be told which one to use.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub struct SmtpServer {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Received>>>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmtpServer {
    /// Start a plain server; it runs until the test process ends.
    pub fn start() -> Self {
        Self::spawn(SslConfig::None, None)
    }

    /// A server that offers STARTTLS and, after it, AUTH PLAIN for `user`/`password`.
    pub fn start_starttls(user: &str, password: &str) -> Self {
        install_crypto_provider();
        let (_, cert, key) = tls_files();
        let ssl = SslConfig::SelfSigned {
            cert_path: cert.display().to_string(),
            key_path: key.display().to_string(),
        };
        Self::spawn(ssl, Some((user.to_string(), password.to_string())))
    }

    /// A plain server behind a TLS terminator: the port speaks TLS from the first byte (SMTPS).
    pub fn start_implicit_tls() -> Self {
        install_crypto_provider();
        let plain = Self::start();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an SMTPS port");
        let port = listener.local_addr().expect("address").port();
        let upstream = plain.port;
        std::thread::spawn(move || terminate_tls(listener, upstream));
        Self { port, ..plain }
    }

    fn spawn(ssl: SslConfig, account: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an SMTP port");
        let port = listener.local_addr().expect("address").port();
        let with_auth = account.is_some();
        let handler = Collector {
            account,
            ..Collector::default()
        };
        let (inbox, logins) = (Arc::clone(&handler.inbox), Arc::clone(&handler.logins));
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server.with_name("lifemap-test");
            if with_auth {
                server.with_auth(AuthMechanism::Plain);
            }
            server.with_ssl(ssl).expect("TLS setup").with_tcp_listener(listener);
            let _ = server.serve();
        });
        Self { port, inbox, logins }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().expect("inbox").clone()
    }

    /// Every AUTH attempt: (user, password).
    pub fn logins(&self) -> Vec<(String, String)> {
        self.logins.lock().expect("logins").clone()
    }
}

/// Accept TLS connections on `listener` and relay each, decrypted, to the plain server.
fn terminate_tls(listener: TcpListener, upstream: u16) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (_, cert, key) = tls_files();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("certificate")
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}
