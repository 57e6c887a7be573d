//! Interop of coney's password hashes and definitions documents with a real RabbitMQ 3.10:
//! hashes coney generates log in on RabbitMQ, and a document coney emits imports into
//! RabbitMQ and re-exports to the same content.
//!
//! Ignored by default: each test needs a node started by `scripts/rabbitmq.sh start PORT DIR`
//! and RESETS it (all its users, vhosts and entities are replaced). Run with
//!   CONEY_RABBITMQ_DIR=DIR cargo test --release --test rabbitmq_definitions -- --ignored --test-threads=1

use coney::auth::password::{HashingAlgorithm, PasswordHash};
use coney::definitions::document::{DestinationType, PermissionDef, UserDef, UserLimitsDef};
use coney::definitions::Definitions;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const FIXTURE: &[u8] = include_bytes!("fixtures/rabbitmq-3.10-definitions.json");

fn node_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CONEY_RABBITMQ_DIR")
            .expect("CONEY_RABBITMQ_DIR: a node dir of scripts/rabbitmq.sh"),
    )
}

/// `rabbitmqctl ARGS` against the node (bounded by the script's 60 s timeout).
fn ctl(args: &[&str]) -> (bool, String) {
    let out = Command::new("scripts/rabbitmq.sh")
        .arg("ctl")
        .arg(node_dir())
        .args(args)
        .output()
        .expect("run scripts/rabbitmq.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// rabbitmq-plugins against the node, with the environment scripts/rabbitmq.sh gives it.
fn enable_plugins(plugins: &[&str]) {
    let dir = node_dir();
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .expect(f)
            .trim()
            .to_owned()
    };
    let node = read("nodename");
    let status = Command::new("timeout")
        .args([
            "120",
            "/usr/lib/rabbitmq/bin/rabbitmq-plugins",
            "-n",
            &node,
            "enable",
        ])
        .args(plugins)
        .env("HOME", dir.join("home"))
        .env("RABBITMQ_NODENAME", &node)
        .env("ERL_EPMD_PORT", read("epmd.port"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .status()
        .expect("run rabbitmq-plugins");
    assert!(status.success(), "rabbitmq-plugins enable {plugins:?}");
}

fn reset_node() {
    for step in [["stop_app"], ["reset"], ["start_app"]] {
        let (ok, text) = ctl(&step);
        assert!(ok, "{step:?}: {text}");
    }
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("coney-{}-{name}", std::process::id()))
}

fn import(defs: &Definitions) {
    let path = temp_file("import.json");
    std::fs::write(&path, defs.to_json()).unwrap();
    let (ok, text) = ctl(&["import_definitions", path.to_str().unwrap()]);
    assert!(ok && !text.contains("Error"), "import_definitions: {text}");
}

fn export() -> Definitions {
    let path = temp_file("export.json");
    let (ok, text) = ctl(&["export_definitions", path.to_str().unwrap()]);
    assert!(ok, "export_definitions: {text}");
    Definitions::parse(&std::fs::read(&path).unwrap()).unwrap()
}

/// The document as JSON with every list sorted, so order does not count.
fn canonical(d: &Definitions) -> Value {
    fn sort(v: Value) -> Value {
        match v {
            Value::Array(items) => {
                let mut items: Vec<Value> = items.into_iter().map(sort).collect();
                items.sort_by_key(|x| x.to_string());
                Value::Array(items)
            }
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, sort(v))).collect()),
            other => other,
        }
    }
    sort(serde_json::to_value(d).unwrap())
}

/// Password hashes coney generates (sha256, RabbitMQ's default, and sha512) are accepted by
/// RabbitMQ's `authenticate_user` after import, and a wrong password is refused.
#[test]
#[ignore = "needs a RabbitMQ node: CONEY_RABBITMQ_DIR"]
fn coney_hashes_log_in_on_rabbitmq() {
    reset_node();
    let users = [
        (
            "coney-sha256",
            HashingAlgorithm::Sha256,
            "s3cret with spaces ✓",
        ),
        (
            "coney-sha512",
            HashingAlgorithm::Sha512,
            "another-Secret-512",
        ),
    ];
    let mut defs = Definitions::default();
    for (name, alg, password) in users {
        let hash = PasswordHash::generate(alg, password.as_bytes()).unwrap();
        defs.users.push(UserDef {
            hashing_algorithm: Some(alg.name().into()),
            limits: Some(UserLimitsDef::default()),
            name: name.into(),
            password: None,
            password_hash: Some(hash.to_base64()),
            tags: Some(coney::definitions::document::Tags::List(vec![
                "management".into()
            ])),
            other: Default::default(),
        });
        defs.permissions.push(PermissionDef {
            configure: ".*".into(),
            read: ".*".into(),
            user: name.into(),
            vhost: "/".into(),
            write: ".*".into(),
            other: Default::default(),
        });
    }
    import(&defs);
    for (name, _, password) in users {
        let (ok, text) = ctl(&["authenticate_user", name, password]);
        assert!(ok && text.contains("Success"), "{name}: {text}");
        let (ok, text) = ctl(&["authenticate_user", name, "wrong"]);
        assert!(
            !ok && text.contains("invalid credentials"),
            "{name}: {text}"
        );
    }
    let exported = export();
    for (name, alg, _) in users {
        let u = exported.users.iter().find(|u| u.name == name).unwrap();
        assert_eq!(u.hashing_algorithm.as_deref(), Some(alg.name()));
    }
}

/// RabbitMQ's own rich export, parsed and emitted by coney, imports into a reset RabbitMQ
/// (which RabbitMQ's own file does not: it stops at the operator policy) and exports back to
/// the same document, modulo order and the one form RabbitMQ normalises itself (vhost tags
/// "" become []).
#[test]
#[ignore = "needs a RabbitMQ node: CONEY_RABBITMQ_DIR"]
fn emitted_definitions_round_trip_through_rabbitmq() {
    enable_plugins(&["rabbitmq_shovel", "rabbitmq_federation"]);
    reset_node();
    let ours = Definitions::parse(FIXTURE).unwrap();
    import(&ours);
    let mut expected = ours.clone();
    for v in &mut expected.vhosts {
        if let Some(m) = &mut v.metadata {
            m.tags = m
                .tags
                .as_ref()
                .map(|t| coney::definitions::document::Tags::List(t.names()));
        }
    }
    // RabbitMQ exports no internal exchanges but does export bindings to them, and skips
    // (without an error) a binding whose exchange does not exist when importing.
    let known = |vhost: &str, x: &str| {
        x.is_empty()
            || x.starts_with("amq.")
            || ours
                .exchanges
                .iter()
                .any(|e| e.vhost == vhost && e.name == x)
    };
    expected.bindings.retain(|b| {
        let dest_ok =
            b.destination_type == DestinationType::Queue || known(&b.vhost, &b.destination);
        dest_ok && known(&b.vhost, &b.source)
    });
    assert_eq!(
        expected.bindings.len(),
        ours.bindings.len() - 1,
        "one binding to app.internal"
    );
    let want = canonical(&expected);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = canonical(&export());
        if got == want || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let differing: Vec<&String> = want
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| got[k.as_str()] != want[k.as_str()])
        .collect();
    assert!(
        differing.is_empty(),
        "differ: {differing:?}\n got: {got}\nwant: {want}"
    );
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------
// Round trips between RabbitMQ and the coney binary: definitions exported by one are
// imported by the other, and the users log in there with their passwords and use the
// queues and bindings.
// ---------------------------------------------------------------------------------------

/// Users with clear-text passwords (the importer hashes them), a vhost with a limit,
/// permissions, topic permissions, exchanges, a queue with an argument, bindings, a policy.
fn round_trip_document() -> Value {
    serde_json::json!({
        "users": [
            {"name": "rt-alice", "password": "alice-pw ✓", "tags": ["management"],
             "limits": {"max-connections": 5}},
            {"name": "rt-bob", "password": "bob-pw", "tags": []}
        ],
        "vhosts": [{"name": "rt-v", "metadata": {"description": "round trip", "tags": ["t1"]}}],
        "permissions": [
            {"user": "rt-alice", "vhost": "rt-v", "configure": ".*", "write": ".*", "read": ".*"},
            {"user": "rt-bob", "vhost": "rt-v", "configure": "^bob\\.", "write": "^rt-", "read": ".*"}
        ],
        "topic_permissions": [
            {"user": "rt-bob", "vhost": "rt-v", "exchange": "rt-t", "write": "^bob\\.", "read": ".*"}
        ],
        "parameters": [
            {"vhost": "rt-v", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 50}}
        ],
        "policies": [
            {"vhost": "rt-v", "name": "rt-limit", "pattern": "^rt-q$", "apply-to": "queues",
             "definition": {"max-length": 1000, "message-ttl": 60000}, "priority": 1}
        ],
        "exchanges": [
            {"name": "rt-x", "vhost": "rt-v", "type": "direct", "durable": true, "auto_delete": false, "arguments": {}},
            {"name": "rt-t", "vhost": "rt-v", "type": "topic", "durable": true, "auto_delete": false, "arguments": {}}
        ],
        "queues": [
            {"name": "rt-q", "vhost": "rt-v", "durable": true, "auto_delete": false, "arguments": {"x-note": "kept", "x-n": 7}}
        ],
        "bindings": [
            {"source": "rt-x", "vhost": "rt-v", "destination": "rt-q", "destination_type": "queue", "routing_key": "k", "arguments": {}},
            {"source": "rt-t", "vhost": "rt-v", "destination": "rt-q", "destination_type": "queue", "routing_key": "bob.#", "arguments": {}}
        ]
    })
}

fn rabbitmq_amqp_port() -> u16 {
    std::fs::read_to_string(node_dir().join("amqp.port"))
        .expect("amqp.port in the node dir")
        .trim()
        .parse()
        .expect("a port")
}

/// A coney process (killed when dropped).
struct Coney {
    child: std::process::Child,
    port: u16,
}

impl Coney {
    /// Runs `coney ARGS` to completion (bounded); panics with its output unless it succeeds.
    fn run(args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("60")
            .arg(env!("CARGO_BIN_EXE_coney"))
            .args(args)
            .output()
            .expect("run coney");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "coney {args:?}: {text}");
        text
    }

    /// Starts coney on `data_dir` and waits (bounded) until it accepts connections.
    fn start(data_dir: &std::path::Path) -> Coney {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_coney"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn coney");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "coney did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Coney { child, port }
    }
}

impl Drop for Coney {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// On the broker at `port`: rt-alice publishes through rt-x and gets the message from rt-q;
/// rt-bob may publish to the topic exchange under bob.* only; a wrong password is refused.
fn use_imported_definitions(port: u16) {
    use amqprs::channel::{BasicGetArguments, BasicPublishArguments};
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let open = |user: &str, pw: &str| {
            OpenConnectionArguments::new("127.0.0.1", port, user, pw)
                .virtual_host("rt-v")
                .heartbeat(600)
                .finish()
        };
        let limit = Duration::from_secs(10);
        let conn = tokio::time::timeout(limit, Connection::open(&open("rt-alice", "alice-pw ✓")))
            .await
            .expect("bounded")
            .expect("rt-alice logs in with its password");
        let ch = conn.open_channel(None).await.expect("channel");
        for (x, key, body) in [("rt-x", "k", "direct"), ("rt-t", "bob.1", "topic")] {
            ch.basic_publish(
                amqprs::BasicProperties::default(),
                body.as_bytes().to_vec(),
                BasicPublishArguments::new(x, key),
            )
            .await
            .expect("publish");
            let mut got = None;
            for _ in 0..200 {
                got = ch
                    .basic_get(BasicGetArguments::new("rt-q").no_ack(true).finish())
                    .await
                    .expect("basic.get");
                if got.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (_, _, got) = got.unwrap_or_else(|| panic!("nothing routed through {x}"));
            assert_eq!(got, body.as_bytes());
        }
        conn.close().await.expect("close");
        let wrong = tokio::time::timeout(limit, Connection::open(&open("rt-bob", "wrong")))
            .await
            .expect("bounded");
        assert!(wrong.is_err(), "a wrong password logged in");
        let bob = tokio::time::timeout(limit, Connection::open(&open("rt-bob", "bob-pw")))
            .await
            .expect("bounded")
            .expect("rt-bob logs in");
        bob.close().await.expect("close");
    });
}

/// RabbitMQ 3.10's own export (passwords hashed by RabbitMQ) imports into a fresh coney data
/// dir with `coney --import-definitions`; on coney the users log in with their passwords and
/// the exchanges, queue and bindings route.
#[test]
#[ignore = "needs a RabbitMQ node: CONEY_RABBITMQ_DIR"]
fn rabbitmq_export_imports_into_coney() {
    reset_node();
    let doc = Definitions::parse(round_trip_document().to_string().as_bytes()).unwrap();
    import(&doc);
    let path = temp_file("rabbit-export.json");
    let (ok, text) = ctl(&["export_definitions", path.to_str().unwrap()]);
    assert!(ok, "export_definitions: {text}");
    let exported = std::fs::read_to_string(&path).unwrap();
    assert!(exported.contains("password_hash") && !exported.contains("alice-pw"));
    let data = temp_file("coney-from-rabbit");
    let _ = std::fs::remove_dir_all(&data);
    Coney::run(&[
        "--import-definitions",
        path.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let coney = Coney::start(&data);
    use_imported_definitions(coney.port);
    drop(coney);
    let _ = std::fs::remove_dir_all(&data);
}

/// coney's export (passwords hashed by coney) imports into a reset RabbitMQ with
/// `rabbitmqctl import_definitions`: the users authenticate and log in there, the entities
/// route, and RabbitMQ exports back what coney exported, section by section.
#[test]
#[ignore = "needs a RabbitMQ node: CONEY_RABBITMQ_DIR"]
fn coney_export_imports_into_rabbitmq() {
    let dir = temp_file("coney-export");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("doc.json");
    std::fs::write(&source, round_trip_document().to_string()).unwrap();
    let data = dir.join("data");
    let data_s = data.to_str().unwrap();
    Coney::run(&[
        "--import-definitions",
        source.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    let out = dir.join("coney.json");
    Coney::run(&[
        "--export-definitions",
        out.to_str().unwrap(),
        "--data-dir",
        data_s,
    ]);
    let ours = Definitions::parse(&std::fs::read(&out).unwrap()).unwrap();
    reset_node();
    let (ok, text) = ctl(&["import_definitions", out.to_str().unwrap()]);
    assert!(ok && !text.contains("Error"), "import_definitions: {text}");
    let (ok, text) = ctl(&["authenticate_user", "rt-alice", "alice-pw ✓"]);
    assert!(ok && text.contains("Success"), "{text}");
    let (ok, _) = ctl(&["authenticate_user", "rt-alice", "wrong"]);
    assert!(!ok, "a wrong password authenticated");
    use_imported_definitions(rabbitmq_amqp_port());
    let theirs = canonical(&export());
    let mut ours = ours;
    ours.product_name = None;
    ours.product_version = None;
    let ours = canonical(&ours);
    for section in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "exchanges",
        "queues",
        "bindings",
        "policies",
        "global_parameters",
    ] {
        assert_eq!(theirs[section], ours[section], "{section}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
