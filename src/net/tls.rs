//! TLS as a byte transport for one AMQP connection: a non-blocking rustls server session over
//! the connection's mio `TcpStream`, plus loading the listener's keys and certificates from
//! RabbitMQ's `ssl_options.*` files, and what the management API reports of a finished
//! handshake (`TlsInfo`). The session above sees the same plaintext as on a plain socket;
//! nothing here knows AMQP.

use crate::auth::cert_subject::{self, CertInfo};
use crate::config::{TlsOptions, TlsVerify};
use crate::limits::TLS_OUTPUT_STAGED_MAX_BYTES;
use crate::protocol::Outbox;
use crate::session::Transport;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Builds the listener's rustls configuration from the `ssl_options.*` files. Every failure
/// names the file and what is wrong with it: a broker must not start "with TLS" it lacks.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let certfile = opts
        .certfile
        .as_deref()
        .ok_or("listeners.ssl.default is set but ssl_options.certfile is not")?;
    let keyfile = opts
        .keyfile
        .as_deref()
        .ok_or("listeners.ssl.default is set but ssl_options.keyfile is not")?;
    let chain = load_certs(certfile)?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
        format!(
            "ssl_options.keyfile {}: no usable private key: {e}",
            keyfile.display()
        )
    })?;
    let roots = match &opts.cacertfile {
        Some(path) => Some(load_roots(path)?),
        None => None,
    };
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (opts.verify, roots) {
        (TlsVerify::None, _) => builder.with_no_client_auth(),
        (TlsVerify::Peer, None) => {
            return Err("ssl_options.verify = verify_peer needs ssl_options.cacertfile".into())
        }
        (TlsVerify::Peer, Some(roots)) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !opts.fail_if_no_peer_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("ssl_options.cacertfile: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "ssl_options.certfile {} and ssl_options.keyfile {}: {e}",
            certfile.display(),
            keyfile.display()
        )
    })?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: String| format!("ssl_options.certfile {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(e.to_string()))?;
    if certs.is_empty() {
        return Err(what("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let what = |e: String| format!("ssl_options.cacertfile {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(e.to_string()))? {
        let cert = cert.map_err(|e| what(e.to_string()))?;
        roots.add(cert).map_err(|e| what(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(what("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// A finished handshake as RabbitMQ 3.10's management API reports it on the connection
/// (`ssl_protocol`, `ssl_key_exchange`, `ssl_cipher`, `ssl_hash`, and `peer_cert_*` from the
/// client's certificate when it sent one): Erlang ssl's names, taken once when the handshake
/// completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub protocol: &'static str,
    pub key_exchange: &'static str,
    pub cipher: &'static str,
    pub hash: &'static str,
    pub peer_cert: Option<CertInfo>,
}

/// Erlang ssl's name of a protocol version (`ssl:connection_information/1`'s `protocol`).
fn protocol_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "tlsv1.3",
        ProtocolVersion::TLSv1_2 => "tlsv1.2",
        ProtocolVersion::TLSv1_1 => "tlsv1.1",
        ProtocolVersion::TLSv1_0 => "tlsv1",
        _ => "",
    }
}

/// Erlang ssl's (key_exchange, cipher, mac) of a suite, which RabbitMQ reports as
/// ssl_key_exchange, ssl_cipher and ssl_hash: TLS 1.3 suites have key exchange `any`, and
/// every AEAD suite's mac is `aead`. RabbitMQ 3.10.8 reported these names for pika clients
/// offering one suite each: all three TLS 1.3 suites, and over TLS 1.2 the three ECDSA ones
/// and RSA's AES-256-GCM and CHACHA20 (tests/tls/run.py test_management_tls_fields checks
/// the EC ones against either broker). These are every suite of rustls's ring provider.
fn suite_names(suite: CipherSuite) -> (&'static str, &'static str, &'static str) {
    use CipherSuite::*;
    match suite {
        TLS13_AES_256_GCM_SHA384 => ("any", "aes_256_gcm", "aead"),
        TLS13_AES_128_GCM_SHA256 => ("any", "aes_128_gcm", "aead"),
        TLS13_CHACHA20_POLY1305_SHA256 => ("any", "chacha20_poly1305", "aead"),
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ecdhe_ecdsa", "aes_256_gcm", "aead"),
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ecdhe_ecdsa", "aes_128_gcm", "aead"),
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ecdhe_ecdsa", "chacha20_poly1305", "aead")
        }
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ecdhe_rsa", "aes_256_gcm", "aead"),
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ecdhe_rsa", "aes_128_gcm", "aead"),
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ecdhe_rsa", "chacha20_poly1305", "aead"),
        _ => ("", "", ""),
    }
}

impl TlsInfo {
    /// What `conn` negotiated; `peer_cert` is the client's end-entity certificate (DER).
    fn of(conn: &ServerConnection, peer_cert: Option<&[u8]>) -> Self {
        let protocol = conn.protocol_version().map_or("", protocol_name);
        let (key_exchange, cipher, hash) = conn
            .negotiated_cipher_suite()
            .map_or(("", "", ""), |s| suite_names(s.suite()));
        TlsInfo {
            protocol,
            key_exchange,
            cipher,
            hash,
            // rustls verified the certificate, so it reads; were it not, it shows as "".
            peer_cert: peer_cert.map(|der| {
                cert_subject::describe(der).unwrap_or_else(|| CertInfo {
                    subject: String::new(),
                    issuer: String::new(),
                    validity: String::new(),
                })
            }),
        }
    }
}

/// One connection's TLS state. Outgoing bytes wait in the connection's `Outbox` (where the
/// write high-water marks count them) and move into rustls only while rustls holds less than
/// `TLS_OUTPUT_STAGED_MAX_BYTES`, so rustls is a small, bounded extension of the socket's own
/// send buffer rather than a second unbounded queue.
pub struct Tls {
    conn: ServerConnection,
    /// close_notify queued once the session finished and its output was handed over.
    closing: bool,
    /// The session was told the handshake's outcome (`take_transport`).
    transport_taken: bool,
    /// The handshake's outcome for the management API, kept from `take_transport` on.
    info: Option<Box<TlsInfo>>,
}

impl Tls {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Self, String> {
        let mut conn = ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
        conn.set_buffer_limit(Some(TLS_OUTPUT_STAGED_MAX_BYTES));
        Ok(Tls {
            conn,
            closing: false,
            transport_taken: false,
            info: None,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Once the handshake is complete, and only once: what the session may know about the
    /// peer, its verified end-entity certificate (DER) if it sent one, for SASL EXTERNAL.
    /// Also keeps what the management API reports of the handshake (`info`).
    pub fn take_transport(&mut self) -> Option<Transport> {
        if self.transport_taken || self.conn.is_handshaking() {
            return None;
        }
        self.transport_taken = true;
        let peer_cert = self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| Box::<[u8]>::from(c.as_ref()));
        self.info = Some(Box::new(TlsInfo::of(&self.conn, peer_cert.as_deref())));
        Some(Transport::Tls { peer_cert })
    }

    /// The finished handshake as the management API reports it; None while handshaking.
    pub fn info(&self) -> Option<&TlsInfo> {
        self.info.as_deref()
    }

    /// Whether rustls holds records (handshake, alerts or data) not yet on the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Reads plaintext into `dst` like `Read::read` on the socket: `Ok(0)` at the peer's end
    /// of stream, `WouldBlock` once the socket is drained and no plaintext is buffered. Every
    /// ciphertext byte taken from the socket (handshake included) is charged to `budget`;
    /// when it runs out before any plaintext appears this returns `Interrupted`, and the
    /// caller's loop stops on the spent budget and comes back next turn.
    pub fn read(
        &mut self,
        socket: &mut impl Read,
        dst: &mut [u8],
        budget: &mut usize,
    ) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // A TCP end without close_notify: an ordinary end of stream for AMQP, whose
                // own connection.close already said whether the end was clean.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if *budget == 0 {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = self.conn.read_tls(socket)?;
            if n == 0 {
                return Ok(0);
            }
            *budget = budget.saturating_sub(n);
            if let Err(e) = self.conn.process_new_packets() {
                // rustls has queued the matching alert; the caller's flush sends it if it can.
                return Err(io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}")));
            }
        }
    }

    /// Moves output from `out` into rustls (up to the staging bound) and writes records to
    /// the socket until both are empty or the socket would block. Returns whether anything
    /// reached the socket and whether it would block; `finished` asks for close_notify once
    /// `out` is empty.
    pub fn flush(
        &mut self,
        out: &mut Outbox,
        socket: &mut impl Write,
        finished: bool,
    ) -> io::Result<(bool, bool)> {
        let mut wrote = false;
        loop {
            if out.pending() > 0 && !self.conn.is_handshaking() {
                // Takes what fits under the buffer limit; 0 when rustls is full.
                out.write_to(&mut self.conn.writer())?;
            }
            if finished && out.pending() == 0 && !self.closing {
                self.closing = true;
                self.conn.send_close_notify();
            }
            if !self.conn.wants_write() {
                return Ok((wrote, false));
            }
            match self.conn.write_tls(socket) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok((wrote, true)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends whatever rustls has queued (an alert after a failed handshake), best effort:
    /// the connection is being dropped either way.
    pub fn send_alert(&mut self, socket: &mut impl Write) {
        while self.conn.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every suite rustls's ring provider can negotiate has Erlang's names, and the ones
    /// RabbitMQ 3.10.8 reported for the same suites (pika over TLS 1.3, and over TLS 1.2
    /// with an EC and an RSA server key, choosing AES-128-GCM, AES-256-GCM or
    /// CHACHA20-POLY1305) are those.
    #[test]
    fn suites_have_rabbitmqs_names() {
        for suite in ring::default_provider().cipher_suites {
            let (kx, cipher, hash) = suite_names(suite.suite());
            assert!(!kx.is_empty() && !cipher.is_empty(), "{suite:?}");
            assert_eq!(hash, "aead", "{suite:?}");
            let tls13 = suite.version().version == ProtocolVersion::TLSv1_3;
            assert_eq!(kx == "any", tls13, "{suite:?}");
        }
        use CipherSuite::*;
        assert_eq!(
            suite_names(TLS13_AES_256_GCM_SHA384),
            ("any", "aes_256_gcm", "aead")
        );
        assert_eq!(
            suite_names(TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            ("ecdhe_ecdsa", "aes_256_gcm", "aead")
        );
        assert_eq!(
            suite_names(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            ("ecdhe_ecdsa", "aes_128_gcm", "aead")
        );
        assert_eq!(
            suite_names(TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
            ("ecdhe_ecdsa", "chacha20_poly1305", "aead")
        );
        assert_eq!(
            suite_names(TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
            ("ecdhe_rsa", "aes_256_gcm", "aead")
        );
        assert_eq!(
            suite_names(TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
            ("ecdhe_rsa", "chacha20_poly1305", "aead")
        );
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_3), "tlsv1.3");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_2), "tlsv1.2");
    }
}
