//! Users, vhosts and permissions for the access-control tests, set up the same way on both
//! brokers: one definitions document in RabbitMQ's format, loaded by a private coney at start
//! (`load_definitions` in a config file) or imported into the external RabbitMQ named by
//! CONEY_TEST_ADDR with `rabbitmqctl import_definitions` (CONEY_RABBITMQ_DIR names its node
//! dir, see scripts/rabbitmq.sh). Names are unique per test, so tests can share one RabbitMQ.
//!
//! Also connection.open by hand (`open_raw`), for refusals whose code, text and class/method
//! ids a test pins down, and amqprs connections as another user or vhost (`connect_as`).

use crate::support::{unique, Broker, Conn};
use crate::wire::{self, method, read_method, shortstr};
use amqprs::connection::OpenConnectionArguments;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

/// A definitions document being built, plus extra config lines for a private coney.
pub struct Setup {
    users: Vec<Value>,
    vhosts: Vec<Value>,
    permissions: Vec<Value>,
    topic_permissions: Vec<Value>,
    parameters: Vec<Value>,
    config: Vec<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    /// guest/guest with every permission on "/", as a fresh node has (coney seeds nothing
    /// when it loads definitions, so the document says it).
    pub fn new() -> Setup {
        Setup {
            users: Vec::new(),
            vhosts: vec![json!({"name": "/"})],
            permissions: Vec::new(),
            topic_permissions: Vec::new(),
            parameters: Vec::new(),
            config: Vec::new(),
        }
        .user_tagged("guest", "guest", &["administrator"])
        .permit("guest", "/", ".*", ".*", ".*")
    }

    /// A user with a clear-text password (both brokers hash it on import) and no tags.
    pub fn user(self, name: &str, password: &str) -> Setup {
        self.user_tagged(name, password, &[])
    }

    /// A user with no password (as after `rabbitmqctl clear_password`): it cannot log in.
    pub fn user_without_password(mut self, name: &str) -> Setup {
        self.users
            .push(json!({"name": name, "password_hash": "", "tags": []}));
        self
    }

    pub fn user_tagged(mut self, name: &str, password: &str, tags: &[&str]) -> Setup {
        self.users
            .push(json!({"name": name, "password": password, "tags": tags}));
        self
    }

    /// A user with limits (-1 for none).
    pub fn user_limited(
        mut self,
        name: &str,
        password: &str,
        max_connections: i64,
        max_channels: i64,
    ) -> Setup {
        let limits = json!({"max-connections": max_connections, "max-channels": max_channels});
        self.users
            .push(json!({"name": name, "password": password, "tags": [], "limits": limits}));
        self
    }

    pub fn vhost(mut self, name: &str) -> Setup {
        self.vhosts.push(json!({"name": name}));
        self
    }

    /// A vhost with max-connections and max-queues.
    pub fn vhost_limited(mut self, name: &str, max_connections: i64, max_queues: i64) -> Setup {
        self.vhosts.push(json!({"name": name}));
        self.parameters.push(json!({
            "vhost": name, "component": "vhost-limits", "name": "limits",
            "value": {"max-connections": max_connections, "max-queues": max_queues}
        }));
        self
    }

    /// configure / write / read patterns of `user` in `vhost`.
    pub fn permit(mut self, user: &str, vhost: &str, c: &str, w: &str, r: &str) -> Setup {
        self.permissions
            .push(json!({"user": user, "vhost": vhost, "configure": c, "write": w, "read": r}));
        self
    }

    /// Topic permissions of `user` on `exchange` in `vhost`.
    pub fn topic(mut self, user: &str, vhost: &str, exchange: &str, w: &str, r: &str) -> Setup {
        self.topic_permissions.push(
            json!({"user": user, "vhost": vhost, "exchange": exchange, "write": w, "read": r}),
        );
        self
    }

    /// A config line for a private coney (ignored for RabbitMQ).
    pub fn config(mut self, line: &str) -> Setup {
        self.config.push(line.to_string());
        self
    }

    pub fn document(&self) -> String {
        json!({
            "users": self.users, "vhosts": self.vhosts, "permissions": self.permissions,
            "topic_permissions": self.topic_permissions, "parameters": self.parameters,
        })
        .to_string()
    }

    /// A private coney loading this document, or the external broker with it imported.
    pub fn start(&self) -> Broker {
        let dir = std::env::temp_dir().join(unique("coney-access"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let defs = dir.join("definitions.json");
        std::fs::write(&defs, self.document()).expect("write definitions");
        let broker = if std::env::var("CONEY_TEST_ADDR").is_ok() {
            rabbitmqctl(&["import_definitions", defs.to_str().expect("utf-8 path")]);
            Broker::start()
        } else {
            let conf = dir.join("coney.conf");
            let mut text = format!("load_definitions = {}\n", defs.display());
            for line in &self.config {
                text.push_str(line);
                text.push('\n');
            }
            std::fs::write(&conf, text).expect("write config");
            Broker::start_with(&["--config", conf.to_str().expect("utf-8 path")])
        };
        // Both brokers have read the files once they accept connections.
        let _ = std::fs::remove_dir_all(&dir);
        broker
    }
}

/// The node dir of the external RabbitMQ (scripts/rabbitmq.sh start PORT DIR).
fn rabbitmq_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CONEY_RABBITMQ_DIR").expect(
            "CONEY_RABBITMQ_DIR: the access tests set users up on RabbitMQ with rabbitmqctl",
        ),
    )
}

/// `rabbitmqctl ARGS` on the external RabbitMQ; panics with its output if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("scripts/rabbitmq.sh")
        .arg("ctl")
        .arg(rabbitmq_dir())
        .args(args)
        .output()
        .expect("run scripts/rabbitmq.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rabbitmqctl {args:?}: {text}");
    text
}

/// An amqprs connection as `user` in `vhost`.
pub async fn try_connect_as(
    b: &Broker,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<Conn, amqprs::error::Error> {
    let args = OpenConnectionArguments::new(b.host(), b.port(), user, password)
        .virtual_host(vhost)
        .heartbeat(600)
        .finish();
    b.connect_with(&args).await
}

/// An open connection as `user` in `vhost` (panics if refused).
pub async fn login(b: &Broker, user: &str, password: &str, vhost: &str) -> Conn {
    try_connect_as(b, user, password, vhost)
        .await
        .unwrap_or_else(|e| panic!("{user} into {vhost}: {e}"))
}

/// A server's connection.close: (code, text, class id, method id).
pub type Close = (u16, String, u16, u16);

fn parse_close(payload: &[u8]) -> Close {
    let p = &payload[4..];
    let code = u16::from_be_bytes([p[0], p[1]]);
    let len = p[2] as usize;
    let text = String::from_utf8_lossy(&p[3..3 + len]).into_owned();
    let rest = &p[3 + len..];
    (
        code,
        text,
        u16::from_be_bytes([rest[0], rest[1]]),
        u16::from_be_bytes([rest[2], rest[3]]),
    )
}

/// The next method: Ok(its frame) or Err(the connection.close), answering a close with
/// close-ok.
fn next_or_close(s: &mut TcpStream, want: (u16, u16)) -> Result<wire::Frame, Close> {
    let f = read_method(s);
    if f.class_method() == (10, 50) {
        let close = parse_close(&f.payload);
        let _ = s.write_all(&method(0, b"\x00\x0a\x00\x33"));
        return Err(close);
    }
    assert_eq!(f.class_method(), want, "unexpected method {f:?}");
    Ok(f)
}

/// A SASL mechanism and how it carries the credentials in start-ok's response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    AmqPlain,
}

/// connection.start-ok with `mechanism`, advertising authentication_failure_close.
fn start_ok(mechanism: Mechanism, user: &str, password: &str) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 11];
    let mut caps = shortstr("authentication_failure_close");
    caps.extend_from_slice(b"t\x01");
    let mut props = shortstr("capabilities");
    props.push(b'F');
    props.extend_from_slice(&wire::longstr(&caps));
    p.extend_from_slice(&wire::longstr(&props));
    let response = match mechanism {
        Mechanism::Plain => format!("\0{user}\0{password}").into_bytes(),
        Mechanism::AmqPlain => {
            let mut t = shortstr("LOGIN");
            t.push(b'S');
            t.extend_from_slice(&wire::longstr(user));
            t.extend_from_slice(&shortstr("PASSWORD"));
            t.push(b'S');
            t.extend_from_slice(&wire::longstr(password));
            t
        }
    };
    let name = match mechanism {
        Mechanism::Plain => "PLAIN",
        Mechanism::AmqPlain => "AMQPLAIN",
    };
    p.extend_from_slice(&shortstr(name));
    p.extend_from_slice(&wire::longstr(response));
    p.extend_from_slice(&shortstr("en_US"));
    method(0, &p)
}

/// Header, start-ok (PLAIN, advertising authentication_failure_close), tune-ok and
/// connection.open of `vhost` by hand: the open socket, or the server's connection.close.
pub fn open_raw(b: &Broker, user: &str, password: &str, vhost: &str) -> Result<TcpStream, Close> {
    open_raw_with(b, Mechanism::Plain, user, password, vhost)
}

/// `open_raw` with the given mechanism.
pub fn open_raw_with(
    b: &Broker,
    mechanism: Mechanism,
    user: &str,
    password: &str,
    vhost: &str,
) -> Result<TcpStream, Close> {
    let mut s = b.tcp();
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .expect("protocol header");
    next_or_close(&mut s, (10, 10))?;
    s.write_all(&start_ok(mechanism, user, password))
        .expect("start-ok");
    next_or_close(&mut s, (10, 30))?;
    let mut tune_ok = b"\x00\x0a\x00\x1f".to_vec();
    tune_ok.extend_from_slice(&2047u16.to_be_bytes());
    tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
    tune_ok.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&method(0, &tune_ok)).expect("tune-ok");
    let mut open = b"\x00\x0a\x00\x28".to_vec();
    open.extend_from_slice(&shortstr(vhost));
    open.extend_from_slice(b"\x00\x00");
    s.write_all(&method(0, &open)).expect("connection.open");
    next_or_close(&mut s, (10, 41))?;
    Ok(s)
}

/// The refusal of a connection.open that must be refused.
pub fn open_refused(b: &Broker, user: &str, password: &str, vhost: &str) -> Close {
    match open_raw(b, user, password, vhost) {
        Ok(_) => panic!("{user} was let into vhost {vhost}"),
        Err(close) => close,
    }
}
