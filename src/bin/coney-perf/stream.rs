//! The load generator's byte stream: a plain TCP socket, or (for `amqps://` URIs) a rustls
//! client session over one. A producer reads confirms on one thread and writes on another,
//! so clones share the rustls state behind a mutex; the socket itself is cloned, and only
//! a writer holding the output lock writes records to it, so they reach the socket in the
//! order rustls numbered them. Reads and writes of plaintext look like a socket's, read
//! timeouts included.

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The CA that server certificates must chain to, set once from `--cacert`.
static CLIENT_CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// How long a TLS write keeps retrying a full socket before it gives up: unlike a plain
/// write, records rustls has numbered cannot be abandoned half-way.
const TLS_WRITE_STALL_MAX: Duration = Duration::from_secs(30);
/// Ciphertext read from the socket at a time.
const TLS_READ_CHUNK_BYTES: usize = 64 * 1024;

/// Loads `path` (PEM) as the only trusted root for amqps:// connections.
pub fn set_ca_file(path: &str) -> Result<(), String> {
    let what = |e: String| format!("--cacert {path}: {e}");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(e.to_string()))? {
        roots
            .add(cert.map_err(|e| what(e.to_string()))?)
            .map_err(|e| what(e.to_string()))?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| what(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    CLIENT_CONFIG
        .set(Arc::new(config))
        .map_err(|_| what("set twice".into()))
}

struct Shared {
    conn: Mutex<ClientConnection>,
    /// Ciphertext not yet on the socket; its lock orders socket writes.
    out: Mutex<Vec<u8>>,
}

pub struct Stream {
    tcp: TcpStream,
    tls: Option<Arc<Shared>>,
    /// Ciphertext read from the socket that rustls has not taken yet (this clone's).
    raw_in: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl Stream {
    /// Plain TCP, or a completed TLS handshake with `host` as the server name when `tls`.
    pub fn new(mut tcp: TcpStream, tls: bool, host: &str) -> io::Result<Stream> {
        if !tls {
            return Ok(Stream {
                tcp,
                tls: None,
                raw_in: Vec::new(),
            });
        }
        let config = CLIENT_CONFIG.get().ok_or_else(|| {
            io::Error::new(ErrorKind::InvalidInput, "amqps:// needs --cacert FILE")
        })?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let mut conn = ClientConnection::new(config.clone(), name).map_err(invalid)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream {
            tcp,
            tls: Some(Arc::new(Shared {
                conn: Mutex::new(conn),
                out: Mutex::new(Vec::new()),
            })),
            raw_in: Vec::new(),
        })
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
            raw_in: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(d)
    }

    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(d)
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Encrypts `buf` (as much as rustls takes) and writes every pending record.
    fn push(&self, shared: &Shared, buf: &[u8]) -> io::Result<usize> {
        let mut out = lock(&shared.out);
        let n = {
            let mut conn = lock(&shared.conn);
            let n = conn.writer().write(buf)?;
            while conn.wants_write() {
                conn.write_tls(&mut *out)?;
            }
            n
        };
        let deadline = Instant::now() + TLS_WRITE_STALL_MAX;
        while !out.is_empty() {
            match (&self.tcp).write(&out) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(k) => {
                    out.drain(..k);
                }
                Err(e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                        && Instant::now() < deadline => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Hands buffered ciphertext to rustls and takes plaintext out; None if there is none
    /// yet. Sends whatever rustls wants to answer (a key update).
    fn plaintext(&mut self, shared: &Shared, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let (got, wants_write) = {
            let mut conn = lock(&shared.conn);
            while !self.raw_in.is_empty() {
                let mut rest = &self.raw_in[..];
                match conn.read_tls(&mut rest) {
                    Ok(k) => {
                        self.raw_in.drain(..k);
                        conn.process_new_packets().map_err(invalid)?;
                    }
                    // Its plaintext buffer is full: take plaintext out first.
                    Err(_) => break,
                }
            }
            let got = match conn.reader().read(buf) {
                Ok(n) => Some(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Some(0),
                Err(e) => return Err(e),
            };
            (got, conn.wants_write())
        };
        if wants_write {
            self.push(shared, &[])?;
        }
        Ok(got)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(shared) = self.tls.clone() else {
            return self.tcp.read(buf);
        };
        loop {
            if let Some(n) = self.plaintext(&shared, buf)? {
                return Ok(n);
            }
            let have = self.raw_in.len();
            self.raw_in.resize(have + TLS_READ_CHUNK_BYTES, 0);
            let got = self.tcp.read(&mut self.raw_in[have..]);
            self.raw_in.truncate(have + *got.as_ref().unwrap_or(&0));
            if got? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tls.clone() {
            Some(shared) => self.push(&shared, buf),
            None => self.tcp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
