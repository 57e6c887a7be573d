//! Shared helpers for the integration tests.
//!
//! * [`Broker::start`] spawns the `coney` binary on a free port with a fresh data
//!   directory (killed on drop), or — when `CONEY_TEST_ADDR=host:port` is set — reuses
//!   that already running broker (this is how the tests are validated against RabbitMQ).
//! * [`Broker::connect`] opens an amqprs connection whose server-sent `connection.close`
//!   is recorded; [`Conn::channel`] opens a channel whose server-sent `channel.close`,
//!   `basic.return`, `basic.ack/nack` (confirms) and `basic.cancel` are recorded, so tests
//!   can assert reply codes and texts that amqprs otherwise hides.
//! * Every wait is bounded by a tokio timeout ([`TIMEOUT`]); nothing sleeps and hopes,
//!   except [`assert_no_delivery`], which by nature waits a short quiet period.
//! * [`unique`] gives per-test names so tests can share one broker in parallel.
//! * [`Broker::start_with`] passes extra flags to a private coney; [`Broker::pid`] with
//!   [`proc_rss_bytes`] and [`proc_fd_count`] (from tests/common/procfs.rs) measure the broker
//!   process (`CONEY_TEST_PID` names an external broker's process).
//! * Hand-written wire bytes (frames, handshakes, connection errors) are in wire.rs.
//!
//! Running: `cargo test --release` (each test starts its own coney), or against any
//! broker, e.g. a private RabbitMQ on 5690:
//! `CONEY_TEST_ADDR=127.0.0.1:5690 cargo test --release --test amqp_basic`.
//! The expected reply codes and texts were recorded from RabbitMQ 3.10.
#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicGetArguments,
    BasicNackArguments, BasicPublishArguments, BasicQosArguments, BasicRejectArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments, GetMessage,
    QueueBindArguments, QueueDeclareArguments, QueueUnbindArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, Close, CloseChannel, Deliver, Nack, Return};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub use crate::procfs::{proc_fd_count, proc_rss_bytes};

/// Upper bound for any single awaited event (a reply, a delivery, a close).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Quiet period used by [`assert_no_delivery`].
pub const QUIET: Duration = Duration::from_millis(300);

pub type AmqpResult<T> = Result<T, amqprs::error::Error>;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// ---------------------------------------------------------------------------------------
// Broker process
// ---------------------------------------------------------------------------------------

/// A broker to test against: either a private `coney` child process or the external
/// broker named by `CONEY_TEST_ADDR`.
pub struct Broker {
    host: String,
    port: u16,
    child: Option<Child>,
    data_dir: Option<PathBuf>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A name unique to this process, this call and this moment: `prefix-pid-n-nanos`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{}-{}-{}",
        prefix,
        std::process::id(),
        n,
        nanos() % 1_000_000_000
    )
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl Broker {
    /// Start a private coney (or reuse `CONEY_TEST_ADDR`); returns once it accepts TCP.
    pub fn start() -> Broker {
        Self::start_with(&[])
    }

    /// Like [`Broker::start`], with extra command-line flags for a private coney, e.g.
    /// `&["--vm-memory-high-watermark", "64MB"]`. An external broker (`CONEY_TEST_ADDR`)
    /// is reused as it is: tests that need the flags check [`Broker::is_external`].
    pub fn start_with(extra_args: &[&str]) -> Broker {
        if let Ok(addr) = std::env::var("CONEY_TEST_ADDR") {
            let (host, port) = addr
                .rsplit_once(':')
                .expect("CONEY_TEST_ADDR must be host:port");
            return Broker {
                host: host.to_string(),
                port: port.parse().expect("CONEY_TEST_ADDR port"),
                child: None,
                data_dir: None,
            };
        }
        Self::start_coney(None, extra_args)
    }

    /// A private coney on `data_dir`, which outlives it (for restart tests), with extra
    /// command-line flags.
    pub fn start_on(data_dir: &std::path::Path, extra_args: &[&str]) -> Broker {
        Self::start_coney(Some(data_dir), extra_args)
    }

    fn start_coney(data_dir: Option<&std::path::Path>, extra_args: &[&str]) -> Broker {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::spawn_coney(data_dir, extra_args) {
                Ok(b) => return b,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start coney: {last_err}");
    }

    fn spawn_coney(
        data_dir: Option<&std::path::Path>,
        extra_args: &[&str],
    ) -> Result<Broker, String> {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("coney-test"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
        let log = std::fs::File::create(dir.join("coney.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let data = data_dir.map_or_else(|| dir.join("data"), |d| d.to_path_buf());
        let child = Command::new(env!("CARGO_BIN_EXE_coney"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .arg("--log-level")
            .arg("info")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("spawn coney: {e}"))?;
        let mut broker = Broker {
            host: "127.0.0.1".into(),
            port,
            child: Some(child),
            data_dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(broker);
            }
            if let Some(status) = broker.child.as_mut().unwrap().try_wait().ok().flatten() {
                let log = broker.log_tail();
                return Err(format!("coney exited early with {status}: {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "coney did not accept on port {port} within 10 s: {}",
                    broker.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The whole coney log so far (empty for an external broker).
    pub fn log(&self) -> String {
        let Some(dir) = &self.data_dir else {
            return String::new();
        };
        std::fs::read_to_string(dir.join("coney.log")).unwrap_or_default()
    }

    /// Last few KiB of the coney log (empty for an external broker).
    pub fn log_tail(&self) -> String {
        let Some(dir) = &self.data_dir else {
            return String::new();
        };
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(dir.join("coney.log")) {
            let _ = f.read_to_string(&mut s);
        }
        let cut = s.len().saturating_sub(4096);
        let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s[cut..].to_string()
    }

    /// The broker's OS process id: the private coney's, or for an external broker the one
    /// given in `CONEY_TEST_PID` (e.g. RabbitMQ's beam.smp), if any.
    pub fn pid(&self) -> Option<u32> {
        match &self.child {
            Some(child) => Some(child.id()),
            None => std::env::var("CONEY_TEST_PID").ok()?.parse().ok(),
        }
    }

    /// True when the tests run against an external broker (`CONEY_TEST_ADDR`).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A raw TCP connection with read/write timeouts, for hand-written byte tests.
    pub fn tcp(&self) -> TcpStream {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("tcp connect");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    pub fn open_args(&self, user: &str, password: &str) -> OpenConnectionArguments {
        OpenConnectionArguments::new(&self.host, self.port, user, password)
            // Ask for a long, non-zero heartbeat: amqprs misbehaves when the negotiated
            // value is 0 (it treats every instant as a missed heartbeat), and the broker's
            // own proposal wins when it is smaller (RabbitMQ proposes 60 s).
            .heartbeat(600)
            .finish()
    }

    /// Open an amqprs connection as guest/guest with a recording connection callback.
    pub async fn connect(&self) -> Conn {
        let args = self.open_args("guest", "guest");
        self.connect_with(&args)
            .await
            .expect("connection.open failed")
    }

    /// Open an amqprs connection with `args` (another user, vhost or mechanism) and a
    /// recording connection callback; the error if the broker refuses it.
    pub async fn connect_with(&self, args: &OpenConnectionArguments) -> AmqpResult<Conn> {
        let conn = within("connection.open", Connection::open(args)).await?;
        let (tx, rx) = unbounded_channel();
        conn.register_callback(ConnRecorder { tx })
            .await
            .expect("register connection callback");
        Ok(Conn {
            conn,
            events: ConnEvents { rx },
        })
    }

    /// Shortcut: a new connection and one channel on it.
    pub async fn connect_channel(&self) -> (Conn, Chan) {
        let conn = self.connect().await;
        let ch = conn.channel().await;
        (conn, ch)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!("---- coney log tail ----\n{}", self.log_tail());
            }
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// True when the peer says it is RabbitMQ (used to skip the rare coney-only assertion).
pub fn is_rabbitmq(conn: &Connection) -> bool {
    conn.server_properties().product() == "RabbitMQ"
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

/// Await `fut`, panicking with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------
// Connection with recorded events
// ---------------------------------------------------------------------------------------

/// What the server told the connection asynchronously.
#[derive(Debug, Clone)]
pub enum ConnEvent {
    Closed {
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    /// connection.blocked with its reason (sent only to clients that advertise the
    /// `connection.blocked` capability, which amqprs 2.1 does not).
    Blocked(String),
    Unblocked,
}

struct ConnRecorder {
    tx: UnboundedSender<ConnEvent>,
}

impl ConnectionCallback for ConnRecorder {
    fn close<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
        close: Close,
    ) -> BoxFut<'async_trait, AmqpResult<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ConnEvent::Closed {
            code: close.reply_code(),
            text: close.reply_text().clone(),
            class_id: close.class_id(),
            method_id: close.method_id(),
        });
        Box::pin(async { Ok(()) })
    }

    fn blocked<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
        reason: String,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ConnEvent::Blocked(reason));
        Box::pin(async {})
    }

    fn unblocked<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ConnEvent::Unblocked);
        Box::pin(async {})
    }

    fn secret_updated<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async {})
    }
}

pub struct ConnEvents {
    rx: UnboundedReceiver<ConnEvent>,
}

impl ConnEvents {
    /// Wait for the server's `connection.close`; returns (reply code, reply text).
    pub async fn closed(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("timed out after {TIMEOUT:?} waiting for connection.close"),
                Ok(Some(ConnEvent::Closed { code, text, .. })) => return (code, text),
                Ok(Some(_)) => continue,
                Ok(None) => panic!("connection event stream ended without connection.close"),
            }
        }
    }

    /// Every event recorded so far, without waiting.
    pub fn drain_now(&mut self) -> Vec<ConnEvent> {
        let mut v = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            v.push(ev);
        }
        v
    }
}

/// An amqprs connection plus the record of server-initiated connection events.
pub struct Conn {
    pub conn: Connection,
    pub events: ConnEvents,
}

impl std::ops::Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Conn {
    /// Open a channel with a recording channel callback.
    pub async fn channel(&self) -> Chan {
        let ch = within("channel.open", self.conn.open_channel(None))
            .await
            .expect("channel.open failed");
        let (tx, rx) = unbounded_channel();
        ch.register_callback(ChanRecorder { tx })
            .await
            .expect("register channel callback");
        Chan {
            ch,
            events: ChanEvents { rx },
            published: 0,
            confirming: false,
        }
    }

    /// Close the connection (connection.close / close-ok handshake).
    pub async fn close(self) {
        within("connection.close-ok", self.conn.close())
            .await
            .expect("connection.close failed");
    }
}

// ---------------------------------------------------------------------------------------
// Channel with recorded events
// ---------------------------------------------------------------------------------------

/// What the server told the channel asynchronously.
#[derive(Debug)]
pub enum ChanEvent {
    Closed {
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    Cancelled(String),
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        multiple: bool,
    },
    Returned {
        code: u16,
        text: String,
        exchange: String,
        routing_key: String,
        props: BasicProperties,
        body: Vec<u8>,
    },
}

struct ChanRecorder {
    tx: UnboundedSender<ChanEvent>,
}

impl ChannelCallback for ChanRecorder {
    fn close<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        close: CloseChannel,
    ) -> BoxFut<'async_trait, AmqpResult<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ChanEvent::Closed {
            code: close.reply_code(),
            text: close.reply_text().clone(),
            class_id: close.class_id(),
            method_id: close.method_id(),
        });
        Box::pin(async { Ok(()) })
    }

    fn cancel<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        cancel: Cancel,
    ) -> BoxFut<'async_trait, AmqpResult<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self
            .tx
            .send(ChanEvent::Cancelled(cancel.consumer_tag().clone()));
        Box::pin(async { Ok(()) })
    }

    fn flow<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        _active: bool,
    ) -> BoxFut<'async_trait, AmqpResult<bool>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok(true) })
    }

    fn publish_ack<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        ack: Ack,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ChanEvent::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
        Box::pin(async {})
    }

    fn publish_nack<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        nack: Nack,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ChanEvent::Nack {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
        });
        Box::pin(async {})
    }

    fn publish_return<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _channel: &'life1 Channel,
        ret: Return,
        basic_properties: BasicProperties,
        content: Vec<u8>,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self.tx.send(ChanEvent::Returned {
            code: ret.reply_code(),
            text: ret.reply_text().clone(),
            exchange: ret.exchange().clone(),
            routing_key: ret.routing_key().clone(),
            props: basic_properties,
            body: content,
        });
        Box::pin(async {})
    }
}

pub struct ChanEvents {
    rx: UnboundedReceiver<ChanEvent>,
}

impl ChanEvents {
    /// Next recorded event, whatever it is (bounded by [`TIMEOUT`]).
    pub async fn next(&mut self) -> ChanEvent {
        within("a channel event", self.rx.recv())
            .await
            .expect("channel event stream ended")
    }

    /// Wait for the server's `channel.close`, skipping other events; returns (code, text).
    pub async fn closed(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("timed out waiting for channel.close from server"),
                Ok(None) => panic!("channel event stream ended without channel.close"),
                Ok(Some(ChanEvent::Closed { code, text, .. })) => return (code, text),
                Ok(Some(_)) => continue,
            }
        }
    }

    /// Wait for the server's `channel.close` and also return its class and method ids.
    pub async fn closed_full(&mut self) -> (u16, String, u16, u16) {
        loop {
            match self.next().await {
                ChanEvent::Closed {
                    code,
                    text,
                    class_id,
                    method_id,
                } => return (code, text, class_id, method_id),
                _ => continue,
            }
        }
    }

    /// Wait until publisher-confirm acks cover `tag`; panics on a nack or a close.
    pub async fn wait_confirmed(&mut self, tag: u64) {
        loop {
            match self.next().await {
                ChanEvent::Ack { tag: t, multiple } => {
                    if t == tag || (multiple && t >= tag) {
                        return;
                    }
                    assert!(t < tag, "ack for tag {t} beyond the {tag} published");
                }
                ChanEvent::Returned { .. } => continue,
                other => panic!("expected a publisher ack for {tag}, got {other:?}"),
            }
        }
    }

    /// Assert nothing is pending right now (non-blocking).
    pub fn assert_empty(&mut self) {
        if let Ok(ev) = self.rx.try_recv() {
            panic!("unexpected channel event {ev:?}");
        }
    }
}

/// An amqprs channel plus the record of server-initiated channel events.
pub struct Chan {
    pub ch: Channel,
    pub events: ChanEvents,
    /// Number of messages published since `confirm.select` (the last publish's seq no).
    pub published: u64,
    /// In confirm mode.
    pub confirming: bool,
}

impl std::ops::Deref for Chan {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.ch
    }
}

/// Received message (from a consumer).
#[derive(Debug)]
pub struct Delivery {
    pub deliver: Deliver,
    pub props: BasicProperties,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn tag(&self) -> u64 {
        self.deliver.delivery_tag()
    }
    pub fn redelivered(&self) -> bool {
        self.deliver.redelivered()
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type Consumer = UnboundedReceiver<ConsumerMessage>;

impl Chan {
    /// Close the channel (channel.close / close-ok handshake).
    pub async fn close(self) {
        within("channel.close-ok", self.ch.close())
            .await
            .expect("channel.close failed");
    }

    /// `confirm.select`; afterwards [`Chan::publish_confirmed`] can wait for acks.
    /// A second call on a channel already in confirm mode is a no-op.
    pub async fn confirm_select(&mut self) {
        if self.confirming {
            return;
        }
        self.confirming = true;
        within(
            "confirm.select-ok",
            self.ch.confirm_select(ConfirmSelectArguments::default()),
        )
        .await
        .expect("confirm.select failed");
        self.published = 0;
    }

    /// Publish (no confirm wait). Counts publishes for confirm tracking.
    pub async fn publish_with(
        &mut self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: &[u8],
        mandatory: bool,
    ) {
        let mut args = BasicPublishArguments::new(exchange, routing_key);
        args.mandatory(mandatory);
        within(
            "basic.publish",
            self.ch.basic_publish(props, body.to_vec(), args.finish()),
        )
        .await
        .expect("basic.publish failed");
        self.published += 1;
    }

    pub async fn publish(&mut self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.publish_with(
            exchange,
            routing_key,
            BasicProperties::default(),
            body,
            false,
        )
        .await
    }

    /// Publish and wait for the publisher-confirm ack (channel must be in confirm mode):
    /// once acked, the message has been routed and enqueued.
    pub async fn publish_confirmed(&mut self, exchange: &str, routing_key: &str, body: &[u8]) {
        self.publish(exchange, routing_key, body).await;
        let tag = self.published;
        self.events.wait_confirmed(tag).await;
    }

    /// Declare a plain (non-durable, non-exclusive, non-auto-delete) queue.
    pub async fn declare_queue(&self, name: &str) -> (String, u32, u32) {
        within(
            "queue.declare-ok",
            self.ch.queue_declare(QueueDeclareArguments::new(name)),
        )
        .await
        .expect("queue.declare failed")
        .expect("queue.declare-ok")
    }

    /// Passive declare: (message count, consumer count) of an existing queue.
    pub async fn queue_counts(&self, name: &str) -> (u32, u32) {
        let (_, m, c) = within(
            "passive queue.declare-ok",
            self.ch
                .queue_declare(QueueDeclareArguments::new(name).passive(true).finish()),
        )
        .await
        .unwrap_or_else(|e| panic!("passive declare of {name} failed: {e}"))
        .expect("queue.declare-ok");
        (m, c)
    }

    /// Start a consumer with a server-generated tag; `no_ack=true` is auto-ack.
    /// Returns (consumer tag, delivery receiver).
    pub async fn consume(&self, queue: &str, no_ack: bool) -> (String, Consumer) {
        let args = BasicConsumeArguments::new(queue, "")
            .manual_ack(!no_ack)
            .finish();
        within("basic.consume-ok", self.ch.basic_consume_rx(args))
            .await
            .expect("basic.consume failed")
    }
}

/// Declare a fresh queue named after `prefix` and publish "m0".."m{n-1}" to it with confirms;
/// returns its name.
pub async fn queue_with(ch: &mut Chan, prefix: &str, n: usize) -> String {
    let q = unique(prefix);
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    for i in 0..n {
        ch.publish_confirmed("", &q, format!("m{i}").as_bytes())
            .await;
    }
    q
}

/// Await the next delivery of a consumer (bounded by [`TIMEOUT`]).
pub async fn next_delivery(rx: &mut Consumer) -> Delivery {
    let mut m = within("a delivery", rx.recv())
        .await
        .expect("consumer stream ended (channel closed?)");
    Delivery {
        deliver: m.deliver.take().unwrap(),
        props: m.basic_properties.take().unwrap(),
        body: m.content.take().unwrap(),
    }
}

/// Await `n` deliveries in order.
pub async fn next_deliveries(rx: &mut Consumer, n: usize) -> Vec<Delivery> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(next_delivery(rx).await);
    }
    v
}

/// Assert the consumer receives nothing during a short quiet period ([`QUIET`]).
pub async fn assert_no_delivery(rx: &mut Consumer) {
    if let Ok(Some(mut m)) = tokio::time::timeout(QUIET, rx.recv()).await {
        let d = m.deliver.take();
        panic!("unexpected delivery {d:?}");
    }
}

/// The bodies of a slice of deliveries as strings.
pub fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.body_str()).collect()
}

// ---------------------------------------------------------------------------------------
// Thin bounded wrappers for common channel operations
// ---------------------------------------------------------------------------------------

impl Chan {
    pub async fn ack(&self, tag: u64, multiple: bool) {
        within(
            "basic.ack",
            self.ch.basic_ack(BasicAckArguments::new(tag, multiple)),
        )
        .await
        .expect("basic.ack failed");
    }

    pub async fn nack(&self, tag: u64, multiple: bool, requeue: bool) {
        within(
            "basic.nack",
            self.ch
                .basic_nack(BasicNackArguments::new(tag, multiple, requeue)),
        )
        .await
        .expect("basic.nack failed");
    }

    pub async fn reject(&self, tag: u64, requeue: bool) {
        within(
            "basic.reject",
            self.ch
                .basic_reject(BasicRejectArguments::new(tag, requeue)),
        )
        .await
        .expect("basic.reject failed");
    }

    /// `basic.get`; `None` is get-empty.
    pub async fn get(&self, queue: &str, no_ack: bool) -> Option<GetMessage> {
        within(
            "basic.get-ok / get-empty",
            self.ch
                .basic_get(BasicGetArguments::new(queue).no_ack(no_ack).finish()),
        )
        .await
        .expect("basic.get failed")
    }

    pub async fn qos(&self, prefetch_count: u16, global: bool) {
        within(
            "basic.qos-ok",
            self.ch
                .basic_qos(BasicQosArguments::new(0, prefetch_count, global)),
        )
        .await
        .expect("basic.qos failed");
    }

    /// `basic.cancel`; returns the tag from cancel-ok.
    pub async fn cancel(&self, consumer_tag: &str) -> String {
        within(
            "basic.cancel-ok",
            self.ch
                .basic_cancel(BasicCancelArguments::new(consumer_tag)),
        )
        .await
        .expect("basic.cancel failed")
    }

    /// Expect that the server closed this channel with `code` and exactly `text`.
    pub async fn expect_closed(&mut self, code: u16, text: &str) {
        let (c, t) = self.events.closed().await;
        assert_eq!((c, t.as_str()), (code, text), "channel.close code/text");
        assert!(
            !self.ch.is_open(),
            "channel still reported open after close"
        );
    }
}

/// Assert that `result` is an error (the operation the server refused).
pub fn assert_err<T: std::fmt::Debug>(what: &str, result: AmqpResult<T>) {
    if let Ok(v) = result {
        panic!("{what} unexpectedly succeeded: {v:?}");
    }
}

/// Await an operation that the server must refuse (bounded): it must return an error.
pub async fn refused<T: std::fmt::Debug, F>(what: &str, fut: F)
where
    F: Future<Output = AmqpResult<T>>,
{
    assert_err(what, within(what, fut).await);
}

// ---------------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------------

impl Chan {
    /// Declare a (non-durable, non-auto-delete) exchange of `kind`.
    pub async fn declare_exchange(&self, name: &str, kind: &str) {
        within(
            "exchange.declare-ok",
            self.ch
                .exchange_declare(ExchangeDeclareArguments::new(name, kind)),
        )
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {name} ({kind}) failed: {e}"));
    }

    pub async fn bind(&self, queue: &str, exchange: &str, routing_key: &str) {
        within(
            "queue.bind-ok",
            self.ch
                .queue_bind(QueueBindArguments::new(queue, exchange, routing_key)),
        )
        .await
        .unwrap_or_else(|e| panic!("queue.bind {queue} -> {exchange} '{routing_key}': {e}"));
    }

    pub async fn unbind(&self, queue: &str, exchange: &str, routing_key: &str) {
        within(
            "queue.unbind-ok",
            self.ch
                .queue_unbind(QueueUnbindArguments::new(queue, exchange, routing_key)),
        )
        .await
        .unwrap_or_else(|e| panic!("queue.unbind {queue} -> {exchange} '{routing_key}': {e}"));
    }

    /// Drain a queue with no-ack basic.get; returns the bodies in order (bounded).
    pub async fn drain(&self, queue: &str) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match self.get(queue, true).await {
                Some((_, _, body)) => out.push(String::from_utf8_lossy(&body).into_owned()),
                None => return out,
            }
        }
        panic!("queue {queue} did not drain");
    }
}

impl Conn {
    /// Poll (bounded: ~5 s) until a passive declare of `queue` fails with 404, i.e. the
    /// broker has deleted it. Brokers may delete asynchronously (RabbitMQ does for exclusive
    /// and auto-delete queues), so this polls rather than checking once.
    pub async fn wait_queue_deleted(&self, queue: &str) {
        for _ in 0..250 {
            let mut ch = self.channel().await;
            let res = within(
                "passive queue.declare",
                ch.ch
                    .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish()),
            )
            .await;
            if res.is_err() {
                ch.expect_closed(404, &format!("NOT_FOUND - no queue '{queue}' in vhost '/'"))
                    .await;
                return;
            }
            ch.close().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("queue {queue} still exists after ~5 s");
    }

    /// True when a passive declare of `queue` succeeds (uses a throw-away channel).
    pub async fn queue_exists(&self, queue: &str) -> bool {
        let mut ch = self.channel().await;
        let res = within(
            "passive queue.declare",
            ch.ch
                .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish()),
        )
        .await;
        if res.is_ok() {
            ch.close().await;
            true
        } else {
            ch.expect_closed(404, &format!("NOT_FOUND - no queue '{queue}' in vhost '/'"))
                .await;
            false
        }
    }
}
