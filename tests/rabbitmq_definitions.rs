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
