//! A minimal blocking AMQP 0-9-1 client over std sockets for the load generator: handshake
//! (PLAIN), one channel, synchronous method calls, and a linear frame reader that lends
//! borrowed frames out of a large buffer. Built on `coney::protocol`; knows nothing of loads.
//!
//! Server-initiated connection.close and channel.close become `ClientError::Closed` with the
//! reply code and text, after the close-ok the spec requires has been sent.

use coney::protocol::constants::{FRAME_HEADER_SIZE, PROTOCOL_HEADER};
use coney::protocol::frame::{self, Frame, FrameKind, Parsed};
use coney::protocol::method::{
    method_name, ChannelCloseOk, ChannelOpen, ConnectionClose, ConnectionCloseOk, ConnectionOpen,
    ConnectionStartOk, ConnectionTuneOk, Method,
};
use coney::protocol::table::TableWriter;
use coney::protocol::wire::Writer;
use coney::protocol::{FieldTable, ReplyCode};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::stream::Stream;
use std::time::{Duration, Instant};

use crate::uri::AmqpUri;

/// Largest frame we ask for in connection.tune-ok (RabbitMQ's default, 128 KiB).
pub const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// Read buffer per connection: many frames per read syscall.
pub const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// Bytes asked for per read; the buffer is compacted when less than this is free at its end.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How long a synchronous call (declare, consume, open) may wait for its reply.
pub const CALL_TIMEOUT_SECS: u64 = 30;
/// How long closing waits for close-ok before dropping the socket.
pub const CLOSE_TIMEOUT_MS: u64 = 2000;
/// Blocking reads wake up this often so loops can notice a stop request.
pub const POLL_INTERVAL_MS: u64 = 100;
/// The one channel every load-generator connection uses.
pub const CHANNEL: u16 = 1;

/// Why a connection failed.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The server closed the connection or the channel, with its reason.
    Closed {
        scope: &'static str,
        code: u16,
        text: String,
        /// The method the server objected to, if it named one.
        method: Option<&'static str>,
    },
    /// The server broke the protocol (from our point of view) or we timed out.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Closed {
                scope,
                code,
                text,
                method,
            } => {
                write!(f, "server closed the {scope}: {code} {text}")?;
                match method {
                    Some(m) => write!(f, " (in reply to {m})"),
                    None => Ok(()),
                }
            }
            ClientError::Protocol(s) => write!(f, "{s}"),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

fn protocol(msg: impl Into<String>) -> ClientError {
    ClientError::Protocol(msg.into())
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A linear read buffer that hands out whole frames borrowed from it.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame_max: u32,
}

impl FrameReader {
    pub fn new(frame_max: u32) -> Self {
        FrameReader {
            buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
            frame_max,
        }
    }

    /// One read syscall. `Ok(0)` means the read timed out; end of stream is an error.
    pub fn fill(&mut self, s: &mut Stream) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK_BYTES {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < READ_CHUNK_BYTES {
                // A frame larger than the buffer (frame_max above 1 MiB): grow once.
                self.buf.resize(self.end + READ_CHUNK_BYTES, 0);
            }
        }
        match s.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the TCP connection",
            )),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e) if is_timeout(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The next complete frame in the buffer, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>> {
        let data = &self.buf[self.start..self.end];
        if data.len() >= PROTOCOL_HEADER.len() && data.starts_with(b"AMQP") {
            return Err(protocol(format!(
                "server does not speak AMQP 0-9-1; it answered with protocol header {:?}",
                &data[..8]
            )));
        }
        let (len, kind, channel, payload_len) = match frame::parse_frame(data, self.frame_max) {
            Ok(Parsed::Frame { frame, len }) => {
                (len, frame.kind, frame.channel, frame.payload.len())
            }
            Ok(Parsed::Incomplete { .. }) => return Ok(None),
            Err(e) => return Err(protocol(format!("bad frame from server: {e:?}"))),
        };
        let at = self.start + FRAME_HEADER_SIZE;
        self.start += len;
        Ok(Some(Frame {
            kind,
            channel,
            payload: &self.buf[at..at + payload_len],
        }))
    }
}

/// What a method frame from the server means to a caller that waits for something else.
pub enum Control {
    /// Not a close: the caller decides.
    Other,
    /// A close; the close-ok has been written to `out` and the error is here.
    Closed(ClientError),
}

/// Turns connection.close / channel.close into an error and queues the close-ok reply.
pub fn check_close(out: &mut Vec<u8>, channel: u16, m: &Method<'_>) -> Control {
    match m {
        Method::ConnectionClose(c) => {
            frame::write_method(out, 0, &Method::ConnectionCloseOk(ConnectionCloseOk));
            Control::Closed(ClientError::Closed {
                scope: "connection",
                code: c.reply_code,
                text: String::from_utf8_lossy(c.reply_text).into_owned(),
                method: (c.class_id != 0).then(|| method_name(c.class_id, c.method_id)),
            })
        }
        Method::ChannelClose(c) => {
            frame::write_method(out, channel, &Method::ChannelCloseOk(ChannelCloseOk));
            Control::Closed(ClientError::Closed {
                scope: "channel",
                code: c.reply_code,
                text: String::from_utf8_lossy(c.reply_text).into_owned(),
                method: (c.class_id != 0).then(|| method_name(c.class_id, c.method_id)),
            })
        }
        _ => Control::Other,
    }
}

/// One open connection with channel `CHANNEL` open on it.
pub struct Client {
    pub stream: Stream,
    pub reader: FrameReader,
    /// Outgoing bytes not yet written (calls flush it themselves).
    pub out: Vec<u8>,
    pub frame_max: u32,
}

fn client_properties() -> Vec<u8> {
    let mut raw = Vec::new();
    let mut w = Writer::new(&mut raw);
    let mut t = TableWriter::begin(&mut w);
    t.longstr("product", b"coney-perf")
        .longstr("version", env!("CARGO_PKG_VERSION").as_bytes())
        .longstr("platform", b"Rust")
        .table("capabilities", |c| {
            c.bool("publisher_confirms", true)
                .bool("consumer_cancel_notify", true)
                .bool("basic.nack", true)
                .bool("connection.blocked", true)
                .bool("authentication_failure_close", true);
        });
    t.finish();
    raw
}

impl Client {
    /// Connects, authenticates, opens the vhost and channel 1. `connect_timeout` bounds each
    /// step, so a broker at its connection limit cannot hang the caller.
    pub fn connect(uri: &AmqpUri, connect_timeout: Duration) -> Result<Client> {
        let addr = uri
            .addr()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| protocol(format!("{} does not resolve", uri.addr())))?;
        let tcp = TcpStream::connect_timeout(&addr, connect_timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(connect_timeout))?;
        tcp.set_write_timeout(Some(connect_timeout))?;
        let stream = Stream::new(tcp, uri.tls, &uri.host)?;
        let mut c = Client {
            stream,
            reader: FrameReader::new(FRAME_MAX_BYTES),
            out: Vec::with_capacity(4096),
            frame_max: FRAME_MAX_BYTES,
        };
        c.stream.write_all(PROTOCOL_HEADER)?;
        c.handshake(uri, connect_timeout)?;
        Ok(c)
    }

    fn handshake(&mut self, uri: &AmqpUri, timeout: Duration) -> Result<()> {
        let mechanisms = self.wait(0, timeout, "connection.start", |m| match m {
            Method::ConnectionStart(s) => Some(s.mechanisms.to_vec()),
            _ => None,
        })?;
        if !mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
            return Err(protocol("server does not offer the PLAIN mechanism"));
        }
        let props = client_properties();
        let mut response = Vec::with_capacity(uri.user.len() + uri.pass.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.pass.as_bytes());
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::parse(&props[4..])
                .map_err(|e| protocol(format!("client properties: {e:?}")))?,
            mechanism: b"PLAIN",
            response: &response,
            locale: b"en_US",
        };
        frame::write_method(&mut self.out, 0, &Method::ConnectionStartOk(start_ok));
        self.flush()?;
        let tune = self.wait(0, timeout, "connection.tune", |m| match m {
            Method::ConnectionTune(t) => Some(*t),
            _ => None,
        })?;
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX_BYTES,
            n => n.min(FRAME_MAX_BYTES),
        };
        self.frame_max = frame_max;
        self.reader.frame_max = frame_max;
        // Heartbeats off: a load generator thread may block in write for long stretches.
        let tune_ok = ConnectionTuneOk {
            channel_max: tune.channel_max,
            frame_max,
            heartbeat: 0,
        };
        frame::write_method(&mut self.out, 0, &Method::ConnectionTuneOk(tune_ok));
        let open = ConnectionOpen {
            virtual_host: uri.vhost.as_bytes(),
            capabilities: b"",
            insist: false,
        };
        frame::write_method(&mut self.out, 0, &Method::ConnectionOpen(open));
        self.flush()?;
        self.wait(0, timeout, "connection.open-ok", |m| {
            matches!(m, Method::ConnectionOpenOk(_)).then_some(())
        })?;
        self.call(
            CHANNEL,
            &Method::ChannelOpen(ChannelOpen::default()),
            "channel.open-ok",
            |m| matches!(m, Method::ChannelOpenOk(_)).then_some(()),
        )
    }

    /// Writes everything queued in `out`.
    pub fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends `m` on `channel` and waits for the reply `want` picks out.
    pub fn call<T>(
        &mut self,
        channel: u16,
        m: &Method<'_>,
        what: &str,
        want: impl FnMut(&Method<'_>) -> Option<T>,
    ) -> Result<T> {
        frame::write_method(&mut self.out, channel, m);
        self.flush()?;
        self.wait(channel, Duration::from_secs(CALL_TIMEOUT_SECS), what, want)
    }

    /// Reads frames until `want` accepts a method on `channel`. Other frames are skipped;
    /// a close from the server ends the wait with its reason.
    pub fn wait<T>(
        &mut self,
        channel: u16,
        timeout: Duration,
        what: &str,
        mut want: impl FnMut(&Method<'_>) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(f) = self.reader.next_frame()? {
                if f.kind != FrameKind::Method {
                    continue;
                }
                let m = Method::decode(f.payload)
                    .map_err(|e| protocol(format!("undecodable method from server: {e:?}")))?;
                if let Control::Closed(e) = check_close(&mut self.out, f.channel, &m) {
                    // Best effort: the close-ok lets the server free the connection at once.
                    let _ = self.stream.write_all(&self.out);
                    return Err(e);
                }
                if f.channel == channel {
                    if let Some(t) = want(&m) {
                        return Ok(t);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(protocol(format!(
                    "timed out after {}s waiting for {what}",
                    timeout.as_secs()
                )));
            }
            self.reader.fill(&mut self.stream)?;
        }
    }

    /// connection.close, then waits (bounded) for close-ok; errors are ignored because the
    /// socket is dropped right after either way.
    pub fn close(mut self) {
        let close = ConnectionClose {
            reply_code: ReplyCode::Success.code(),
            reply_text: b"Goodbye",
            class_id: 0,
            method_id: 0,
        };
        frame::write_method(&mut self.out, 0, &Method::ConnectionClose(close));
        if self.flush().is_err() {
            return;
        }
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(POLL_INTERVAL_MS)));
        let _ = self.wait(
            0,
            Duration::from_millis(CLOSE_TIMEOUT_MS),
            "connection.close-ok",
            |m| matches!(m, Method::ConnectionCloseOk(_)).then_some(()),
        );
    }
}
