//! coney's side of definitions and seeding (coney only: RabbitMQ's are its own files and
//! commands): the default_* keys seed a fresh data dir once; users, vhosts and permissions
//! survive restarts; load_definitions refuses what coney cannot do; offline import and export
//! of a data dir, refused while a broker holds it. The round trip with a real RabbitMQ is in
//! tests/rabbitmq_definitions.rs.

use crate::access_support::{login, open_raw, open_refused};
use crate::support::*;
use amqprs::channel::QueueDeclareArguments;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// None when the tests run against an external broker: these need coney's files.
fn coney_only() -> bool {
    std::env::var("CONEY_TEST_ADDR").is_err()
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("coney-defs"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the coney binary with `args` to completion; killed (and the test failed) if it is
/// still running after 60 s, e.g. listening when it should have refused to start.
fn coney(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coney"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coney");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for coney").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("coney output");
            panic!("coney {args:?} did not exit: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("coney output")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The default_* keys seed a fresh data dir: the default user logs into the default vhost
/// with its password and tags-independent permissions; guest does not exist. Seeding happens
/// once: a changed default_pass later does not change the stored user.
#[tokio::test]
async fn default_keys_seed_a_fresh_data_dir_once() {
    if !coney_only() {
        return;
    }
    let dir = Scratch::new();
    let data = dir.path("data");
    let (user, vhost) = (unique("admin"), unique("apps"));
    let conf = |pass: &str| {
        dir.write(
            "coney.conf",
            &format!(
                "default_user = {user}\ndefault_pass = {pass}\ndefault_vhost = {vhost}\n\
                 default_user_tags.management = true\n\
                 default_permissions.configure = ^own\\.\n\
                 default_permissions.write = .*\ndefault_permissions.read = .*\n"
            ),
        )
    };
    let c1 = conf("first-pass");
    let b = Broker::start_on(&data, &["--config", p(&c1)]);
    let c = login(&b, &user, "first-pass", &vhost).await;
    let ch = c.channel().await;
    ch.declare_queue("own.q").await;
    let mut ch = c.channel().await;
    refused(
        "declare other",
        ch.queue_declare(QueueDeclareArguments::new("other")),
    )
    .await;
    ch.expect_closed(
        403,
        &format!(
            "ACCESS_REFUSED - access to queue 'other' in vhost '{vhost}' refused for user '{user}'"
        ),
    )
    .await;
    c.close().await;
    assert_eq!(open_refused(&b, "guest", "guest", "/").0, 403, "no guest");
    drop(b);
    let c2 = conf("second-pass");
    let b = Broker::start_on(&data, &["--config", p(&c2)]);
    open_raw(&b, &user, "first-pass", &vhost).expect("the stored password");
    assert_eq!(open_refused(&b, &user, "second-pass", &vhost).0, 403);
}

/// Users (their hashes), vhosts, permissions and the durable entities in each vhost survive
/// a restart without the definitions file that created them.
#[tokio::test]
async fn users_vhosts_and_their_entities_survive_restarts() {
    if !coney_only() {
        return;
    }
    let dir = Scratch::new();
    let data = dir.path("data");
    let (user, vhost) = (unique("keeper"), unique("kept"));
    let defs = json!({
        "users": [{"name": user, "password": "keep-pw", "tags": ["monitoring"]}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [{"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^ok\\.", "read": ".*"}],
    });
    let defs = dir.write("defs.json", &defs.to_string());
    let conf = dir.write("coney.conf", &format!("load_definitions = {}\n", p(&defs)));
    let b = Broker::start_on(&data, &["--config", p(&conf)]);
    let c = login(&b, &user, "keep-pw", &vhost).await;
    let mut ch = c.channel().await;
    within(
        "durable declare",
        ch.ch
            .queue_declare(QueueDeclareArguments::durable_client_named("dq")),
    )
    .await
    .expect("declare");
    ch.bind("dq", "amq.topic", "ok.#").await;
    ch.confirm_select().await;
    ch.publish_with(
        "amq.topic",
        "ok.1",
        amqprs::BasicProperties::default()
            .with_delivery_mode(2)
            .finish(),
        b"kept",
        false,
    )
    .await;
    ch.events.wait_confirmed(1).await;
    c.close().await;
    drop(b);
    let b = Broker::start_on(&data, &[]);
    assert_eq!(
        open_refused(&b, "guest", "guest", "/").0,
        403,
        "the definitions had no guest and a data dir with users is not seeded"
    );
    let c = login(&b, &user, "keep-pw", &vhost).await;
    let mut ch = c.channel().await;
    assert_eq!(ch.drain("dq").await, ["kept"]);
    ch.confirm_select().await;
    ch.publish_confirmed("amq.topic", "ok.2", b"routed").await;
    assert_eq!(ch.drain("dq").await, ["routed"], "the binding survived");
    ch.publish("amq.topic", "no.1", b"m").await;
    ch.expect_closed(
        403,
        &format!("ACCESS_REFUSED - access to topic 'no.1' in exchange 'amq.topic' in vhost '{vhost}' refused for user '{user}'"),
    )
    .await;
}

/// load_definitions with something coney would not act on (a policy with ha-mode) stops the
/// start with exit code 78 naming the entry, and the password in the file is not in the output.
#[test]
fn load_definitions_refuses_what_coney_cannot_do() {
    if !coney_only() {
        return;
    }
    let dir = Scratch::new();
    let secret = unique("never-logged");
    let defs = json!({
        "users": [{"name": "u", "password": secret, "tags": []}],
        "vhosts": [{"name": "/"}],
        "policies": [{"vhost": "/", "name": "ha", "pattern": ".*", "apply-to": "queues",
                      "definition": {"message-ttl": 1000, "ha-mode": "all"}, "priority": 0}],
    });
    let defs = dir.write("defs.json", &defs.to_string());
    let conf = dir.write(
        "coney.conf",
        &format!("load_definitions = {}\nlog.level = debug\n", p(&defs)),
    );
    let data = dir.path("data");
    let out = coney(&[
        "--config",
        p(&conf),
        "--data-dir",
        p(&data),
        "--listen",
        "127.0.0.1:0",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains("policy 'ha' in vhost '/': Validation failed")
            && t.contains(
                r#"[{<<"ha-mode">>,<<"all">>}] are policy settings coney does not support"#
            ),
        "{t}"
    );
    assert!(!t.contains(&secret), "the password was printed: {t}");
    // A password in the wrong place of a malformed document is not echoed either.
    let bad = format!(r#"{{"users":[{{"name":"u","password":"x","limits":"{secret}"}}]}}"#);
    dir.write("defs.json", &bad);
    let out = coney(&[
        "--config",
        p(&conf),
        "--data-dir",
        p(&data),
        "--listen",
        "127.0.0.1:0",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(t.contains("definitions are not valid"), "{t}");
    assert!(!t.contains(&secret), "the password was printed: {t}");
}

fn names(doc: &Value, list: &str) -> Vec<String> {
    doc[list]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| e["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Offline import into a data dir, then a broker on it: the imported user logs in, its queue
/// and binding work. While the broker holds the data dir, export is refused (exit 75); after,
/// the export has the user's hash (never a password), the vhost, queue and binding. An import
/// naming a transient queue is refused whole (exit 65) and changes nothing.
#[tokio::test]
async fn offline_import_and_export_of_a_data_dir() {
    if !coney_only() {
        return;
    }
    let dir = Scratch::new();
    let data = dir.path("data");
    let (user, vhost) = (unique("imported"), unique("iv"));
    let doc = json!({
        "users": [{"name": user, "password": "imp-pw", "tags": ["management"]}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [{"name": "ix", "vhost": vhost, "type": "direct", "durable": true, "auto_delete": false, "arguments": {}}],
        "queues": [{"name": "iq", "vhost": vhost, "durable": true, "auto_delete": false, "arguments": {"x-custom": 7}}],
        "bindings": [{"source": "ix", "vhost": vhost, "destination": "iq", "destination_type": "queue", "routing_key": "k", "arguments": {}}],
    });
    let file = dir.write("import.json", &doc.to_string());
    let out = coney(&["--import-definitions", p(&file), "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", text(&out));
    let b = Broker::start_on(&data, &[]);
    let c = login(&b, &user, "imp-pw", &vhost).await;
    let mut ch = c.channel().await;
    ch.confirm_select().await;
    ch.publish_confirmed("ix", "k", b"through the imported binding")
        .await;
    assert_eq!(ch.drain("iq").await, ["through the imported binding"]);
    c.close().await;
    let out = coney(&["--export-definitions", "-", "--data-dir", p(&data)]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("in use"), "{}", text(&out));
    drop(b);
    let out = coney(&["--export-definitions", "-", "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", text(&out));
    let exported: Value = serde_json::from_slice(&out.stdout).expect("JSON export");
    assert!(names(&exported, "users").contains(&user));
    assert!(names(&exported, "vhosts").contains(&vhost));
    assert_eq!(names(&exported, "queues"), ["iq"]);
    assert_eq!(names(&exported, "exchanges"), ["ix"]);
    assert_eq!(exported["queues"][0]["arguments"], json!({"x-custom": 7}));
    assert_eq!(exported["bindings"][0]["routing_key"], "k");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("password_hash") && !stdout.contains("imp-pw"));
    let transient = json!({
        "users": [{"name": "late", "password": "x", "tags": []}],
        "queues": [{"name": "tq", "vhost": vhost, "durable": false, "auto_delete": false, "arguments": {}}],
    });
    let file = dir.write("transient.json", &transient.to_string());
    let out = coney(&["--import-definitions", p(&file), "--data-dir", p(&data)]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("queue 'tq' in vhost '{vhost}'")),
        "{}",
        text(&out)
    );
    let out = coney(&["--export-definitions", "-", "--data-dir", p(&data)]);
    let again: Value = serde_json::from_slice(&out.stdout).expect("JSON export");
    assert!(
        !names(&again, "users").contains(&"late".to_string()),
        "nothing imported"
    );
}
