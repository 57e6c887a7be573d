//! What the coneyctl tests run against and how they run it.
//!
//! * The live target: `CONEYCTL_TEST_API=host:port` with `CONEYCTL_TEST_AMQP=host:port` (and
//!   `CONEYCTL_TEST_USER`/`CONEYCTL_TEST_PASS`, default guest) names any broker serving the
//!   management API; `CONEYCTL_TEST_RABBITMQ_DIR=DIR` a node started by `scripts/rabbitmq.sh`
//!   with the management plugin (and the shovel and federation plugins for the plugin
//!   status tests, which skip their steps without them); otherwise a private RabbitMQ node
//!   with all of those is started once for the run and stopped when the test process exits. Without any of them (no rabbitmq-server
//!   installed) a live test fails saying so: it never passes without having run.
//! * Steps: a command line, the exact stdout, stderr and exit code expected (rabbitmqctl
//!   3.10's), and which lines are rows whose order does not matter. With a RabbitMQ node
//!   directory the steps marked for it are also run through rabbitmqctl, whose output must
//!   equal the same expectation: `Ctl::Always` steps by default, every `Ctl::Full` step too
//!   with `CONEYCTL_TEST_RABBITMQCTL=all`, none with `=none`.
//! * The fixture: entities made once through AMQP (amqprs) and kept alive by a thread:
//!   queues `ctl-q1` (durable, 3 messages) and `ctl-q2` (x-max-length 10, one consumer with
//!   prefetch 5), topic exchange `ctl-ex` bound to `ctl-q1` with `a.*` and `{k: v}`.
//! * Every wait is bounded; tests hold one lock, so one test's entities never show up in
//!   another's listing.
#![allow(dead_code)]

use amqprs::callbacks::ConnectionCallback;
use amqprs::channel::{
    BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ExchangeDeclareArguments, ExchangeDeleteArguments, QueueBindArguments, QueueDeclareArguments,
    QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, Close, FieldTable, FieldValue, LongStr};
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// Longest any one coneyctl or rabbitmqctl run may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);
/// Longest wait for the API to show a change (RabbitMQ's statistics arrive every 5 s).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The plugins of a private node: the management API, and the shovel and federation
/// plugins with their management parts for shovel_status and federation_status.
const PLUGINS: &str = "rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management \
                       rabbitmq_federation rabbitmq_federation_management";

pub struct Target {
    pub api: (String, u16),
    pub amqp: (String, u16),
    pub user: String,
    pub pass: String,
    /// A scripts/rabbitmq.sh node directory: rabbitmqctl can be run against the target.
    pub node_dir: Option<PathBuf>,
    pub ctl_mode: CtlMode,
}

/// Which steps are also run through rabbitmqctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtlMode {
    None,
    Default,
    All,
}

/// Whether a step is run through rabbitmqctl too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// In every run with a RabbitMQ node: the representative steps.
    Always,
    /// With CONEYCTL_TEST_RABBITMQCTL=all.
    Full,
    /// Never: coneyctl's own behaviour (a different error text, a coneyctl-only feature).
    Never,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn split_addr(var: &str, value: &str) -> (String, u16) {
    let (h, p) = value
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{var}={value} is not host:port"));
    (
        h.to_string(),
        p.parse()
            .unwrap_or_else(|_| panic!("{var}={value}: bad port")),
    )
}

fn read_port(dir: &std::path::Path, file: &str) -> u16 {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}/{file} holds no port", dir.display()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ctl_mode(has_dir: bool) -> CtlMode {
    match (
        has_dir,
        std::env::var("CONEYCTL_TEST_RABBITMQCTL").as_deref(),
    ) {
        (false, _) | (true, Ok("none")) => CtlMode::None,
        (true, Ok("all")) => CtlMode::All,
        _ => CtlMode::Default,
    }
}

static TARGET: OnceLock<Target> = OnceLock::new();
static PRIVATE_NODE: OnceLock<PathBuf> = OnceLock::new();
static LOCK: Mutex<()> = Mutex::new(());

/// The live target; panics when there is no management API to test against.
pub fn target() -> &'static Target {
    TARGET.get_or_init(find_target)
}

fn find_target() -> Target {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let user = env("CONEYCTL_TEST_USER").unwrap_or_else(|| "guest".into());
    let pass = env("CONEYCTL_TEST_PASS").unwrap_or_else(|| "guest".into());
    let node_dir = env("CONEYCTL_TEST_RABBITMQ_DIR").map(PathBuf::from);
    if let Some(api) = env("CONEYCTL_TEST_API") {
        let amqp = env("CONEYCTL_TEST_AMQP").expect("CONEYCTL_TEST_API needs CONEYCTL_TEST_AMQP");
        let ctl_mode = ctl_mode(node_dir.is_some());
        return Target {
            api: split_addr("CONEYCTL_TEST_API", &api),
            amqp: split_addr("CONEYCTL_TEST_AMQP", &amqp),
            user,
            pass,
            node_dir,
            ctl_mode,
        };
    }
    let dir = match node_dir {
        Some(d) => d,
        None if std::path::Path::new(RABBITMQ_SERVER).exists() => start_private_node(),
        None => panic!(
            "no management API to test against: set CONEYCTL_TEST_API and \
             CONEYCTL_TEST_AMQP, or CONEYCTL_TEST_RABBITMQ_DIR, or install rabbitmq-server \
             (scripts/rabbitmq.sh install)"
        ),
    };
    Target {
        api: ("127.0.0.1".into(), read_port(&dir, "mgmt.port")),
        amqp: ("127.0.0.1".into(), read_port(&dir, "amqp.port")),
        user,
        pass,
        ctl_mode: ctl_mode(true),
        node_dir: Some(dir),
    }
}

extern "C" fn stop_private_node() {
    if let Some(dir) = PRIVATE_NODE.get() {
        let _ = Command::new(repo().join("scripts/rabbitmq.sh"))
            .arg("stop")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts a RabbitMQ node with the management plugin on free ports, stopped at exit.
fn start_private_node() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coneyctl-test-rmq-{}", std::process::id()));
    let (amqp, mgmt) = (free_port(), free_port());
    let started = Instant::now();
    let run = run_bounded(
        Command::new(repo().join("scripts/rabbitmq.sh"))
            .args(["start", &amqp.to_string()])
            .arg(&dir)
            .env("RABBITMQ_PLUGINS", PLUGINS)
            .env("RABBITMQ_MGMT_PORT", mgmt.to_string()),
        None,
    );
    PRIVATE_NODE.set(dir.clone()).expect("one private node");
    // SAFETY: registers a plain function with no arguments to run at exit.
    unsafe {
        libc::atexit(stop_private_node);
    }
    assert_eq!(
        run.code, 0,
        "scripts/rabbitmq.sh start failed:\n{}",
        run.err
    );
    eprintln!(
        "coneyctl tests: private RabbitMQ on 127.0.0.1:{amqp}, management {mgmt}, up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    dir
}

/// Serialises the tests that use the broker (they list what the others create).
pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a process printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub out: String,
    pub err: String,
    pub code: i32,
}

/// Runs a command to its end, killing it after RUN_LIMIT.
pub fn run_bounded(cmd: &mut Command, stdin: Option<&str>) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        out: String::from_utf8_lossy(&out_reader.join().expect("reader")).into_owned(),
        err: String::from_utf8_lossy(&err_reader.join().expect("reader")).into_owned(),
        code: status.code().unwrap_or(-1),
    }
}

/// coneyctl with the target's API and credentials in CONEYCTL_URL (so that usage errors
/// show only the step's own arguments).
pub fn coneyctl(t: &Target, args: &[String], stdin: Option<&str>) -> Run {
    let url = format!("http://{}:{}@{}:{}", t.user, t.pass, t.api.0, t.api.1);
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_coneyctl"))
            .args(args)
            .env("CONEYCTL_URL", url),
        stdin,
    )
}

/// rabbitmqctl against the target node; its one wording that names itself is mapped.
pub fn rabbitmqctl(t: &Target, args: &[String], stdin: Option<&str>) -> Run {
    let dir = t.node_dir.as_ref().expect("a node directory");
    let mut run = run_bounded(
        Command::new(repo().join("scripts/rabbitmq.sh"))
            .arg("ctl")
            .arg(dir)
            .args(args),
        stdin,
    );
    run.out = run.out.replace(
        "'rabbitmqctl help set_permissions'",
        "'coneyctl help set_permissions'",
    );
    run
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Which rows of a listing a step compares.
pub type RowFilter = Box<dyn Fn(&str) -> bool>;

/// One command and what it must print.
pub struct Step {
    pub args: Vec<String>,
    pub stdin: Option<String>,
    pub out: String,
    pub err: String,
    pub code: i32,
    /// Lines of stdout before the rows; rows are compared as a sorted set.
    pub rows_from: Option<usize>,
    /// Only rows this keeps are compared (others belong to the broker or other tests).
    pub keep: Option<RowFilter>,
    pub ctl: Ctl,
    /// Instead of checking the output: run until stdout contains this (bounded).
    pub wait_for: Option<String>,
    /// Applied to stdout and to the expectation before comparing: what differs between
    /// brokers or runs (a timestamp, a link's connection name) is made the same.
    pub mask: Option<fn(&str) -> String>,
}

pub fn step(args: &[&str]) -> Step {
    Step {
        args: strings(args),
        stdin: None,
        out: String::new(),
        err: String::new(),
        code: 0,
        rows_from: None,
        keep: None,
        ctl: Ctl::Full,
        wait_for: None,
        mask: None,
    }
}

/// A step that waits until the API shows `needle` in the output of `args`.
pub fn wait(args: &[&str], needle: &str) -> Step {
    let mut s = step(args);
    s.wait_for = Some(needle.to_string());
    s.ctl = Ctl::Never;
    s
}

impl Step {
    pub fn out(mut self, text: &str) -> Step {
        self.out = text.to_string();
        self
    }
    pub fn err(mut self, text: &str, code: i32) -> Step {
        self.err = text.to_string();
        self.code = code;
        self
    }
    pub fn rows(mut self, from: usize, keep: impl Fn(&str) -> bool + 'static) -> Step {
        self.rows_from = Some(from);
        self.keep = Some(Box::new(keep));
        self
    }
    pub fn all_rows(mut self, from: usize) -> Step {
        self.rows_from = Some(from);
        self
    }
    pub fn stdin(mut self, text: &str) -> Step {
        self.stdin = Some(text.to_string());
        self
    }
    pub fn always(mut self) -> Step {
        self.ctl = Ctl::Always;
        self
    }
    pub fn coneyctl_only(mut self) -> Step {
        self.ctl = Ctl::Never;
        self
    }
    pub fn mask(mut self, f: fn(&str) -> String) -> Step {
        self.mask = Some(f);
        self
    }
}

/// Stdout with its rows filtered and sorted (and JSON rows without their leading comma).
fn normalize(text: &str, rows_from: Option<usize>, keep: Option<&dyn Fn(&str) -> bool>) -> String {
    let Some(from) = rows_from else {
        return text.to_string();
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let from = from.min(lines.len());
    let (head, rest) = lines.split_at(from);
    let (rest, tail) = match rest.split_last() {
        Some((last, before)) if *last == "]\n" => (before, Some(*last)),
        _ => (rest, None),
    };
    let mut rows: Vec<&str> = rest
        .iter()
        .map(|l| l.strip_prefix(',').unwrap_or(l))
        .filter(|l| keep.is_none_or(|k| k(l)))
        .collect();
    rows.sort_unstable();
    let mut s: String = head.concat();
    s.push_str(&rows.concat());
    s.push_str(tail.unwrap_or(""));
    s
}

fn assert_run(tool: &str, s: &Step, run: &Run) {
    let keep = s.keep.as_deref();
    let masked = |text: &str| s.mask.map_or_else(|| text.to_string(), |m| m(text));
    let got = Run {
        out: normalize(&masked(&run.out), s.rows_from, keep),
        ..run.clone()
    };
    let want = Run {
        out: normalize(&masked(&s.out), s.rows_from, keep),
        err: s.err.clone(),
        code: s.code,
    };
    assert_eq!(
        got, want,
        "{tool} {:?}\n--- got stdout:\n{}--- got stderr:\n{}",
        s.args, run.out, run.err
    );
}

/// Runs coneyctl commands whatever they answer: removing what an interrupted earlier run
/// against the same broker may have left.
pub fn quietly(t: &Target, commands: &[&[&str]]) {
    for args in commands {
        coneyctl(t, &strings(args), None);
    }
}

/// Runs `args` with coneyctl until stdout contains `needle`.
pub fn wait_until(t: &Target, args: &[String], needle: &str) {
    wait_for_line(t, args, &format!("{needle:?}"), |out| out.contains(needle));
}

/// Runs `args` with coneyctl until `done` holds for its stdout; `what` names it for errors.
pub fn wait_for_line(t: &Target, args: &[String], what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let run = coneyctl(t, args, None);
        if run.code == 0 && done(&run.out) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {SETTLE_LIMIT:?}, coneyctl {args:?} still does not show {what}:\n{}{}",
            run.out,
            run.err
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn selected(t: &Target, ctl: Ctl) -> bool {
    match (t.ctl_mode, ctl) {
        (CtlMode::None, _) | (_, Ctl::Never) => false,
        (CtlMode::All, _) | (CtlMode::Default, Ctl::Always) => true,
        (CtlMode::Default, Ctl::Full) => false,
    }
}

/// Runs the steps with coneyctl; then, if any step is selected for rabbitmqctl, runs the
/// sequence again (after `setup` again) with rabbitmqctl for those steps and coneyctl for
/// the rest, so the broker goes through the same states. A sequence must end where it began.
pub fn check(t: &Target, setup: &dyn Fn(), steps: &[Step]) {
    setup();
    run_pass(t, steps, false);
    if steps.iter().any(|s| selected(t, s.ctl)) {
        setup();
        run_pass(t, steps, true);
    }
}

fn run_pass(t: &Target, steps: &[Step], with_ctl: bool) {
    for s in steps {
        if let Some(needle) = &s.wait_for {
            wait_until(t, &s.args, needle);
            continue;
        }
        if with_ctl && selected(t, s.ctl) {
            assert_run(
                "rabbitmqctl",
                s,
                &rabbitmqctl(t, &s.args, s.stdin.as_deref()),
            );
        } else {
            assert_run("coneyctl", s, &coneyctl(t, &s.args, s.stdin.as_deref()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// AMQP: the fixture and helpers (amqprs)
// ---------------------------------------------------------------------------------------

pub async fn connect(t: &Target, name: &str) -> Connection {
    let args = OpenConnectionArguments::new(&t.amqp.0, t.amqp.1, &t.user, &t.pass)
        .connection_name(name)
        // amqprs misbehaves with a heartbeat of 0; the broker's smaller proposal wins.
        .heartbeat(600)
        .finish();
    within("connection.open", Connection::open(&args))
        .await
        .expect("connection.open")
}

pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(SETTLE_LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {SETTLE_LIMIT:?}"))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Declares `queue` (non-durable) and publishes `n` messages to it through the default
/// exchange, on a short-lived connection.
pub fn queue_with_messages(t: &Target, queue: &str, n: usize) {
    runtime().block_on(async {
        let conn = connect(t, "coneyctl-test-setup").await;
        let ch = within("channel.open", conn.open_channel(None))
            .await
            .expect("channel");
        within(
            "queue.declare",
            ch.queue_declare(QueueDeclareArguments::new(queue)),
        )
        .await
        .expect("queue.declare");
        for _ in 0..n {
            ch.basic_publish(
                BasicProperties::default(),
                b"m".to_vec(),
                BasicPublishArguments::new("", queue),
            )
            .await
            .expect("publish");
        }
        let _ = within("channel.close", ch.close()).await;
        let _ = within("connection.close", conn.close()).await;
    });
}

/// Declares (`declare`) or deletes a non-durable exchange of `kind`.
pub fn exchange(t: &Target, name: &str, kind: &str, declare: bool) {
    runtime().block_on(async {
        let conn = connect(t, "coneyctl-test-setup").await;
        let ch = within("channel.open", conn.open_channel(None))
            .await
            .expect("channel");
        if declare {
            within(
                "exchange.declare",
                ch.exchange_declare(ExchangeDeclareArguments::new(name, kind)),
            )
            .await
            .expect("exchange.declare");
        } else {
            let _ = within(
                "exchange.delete",
                ch.exchange_delete(ExchangeDeleteArguments::new(name)),
            )
            .await;
        }
        let _ = within("connection.close", conn.close()).await;
    });
}

/// Deletes `queue` if it exists.
pub fn delete_queue(t: &Target, queue: &str) {
    runtime().block_on(async {
        let conn = connect(t, "coneyctl-test-cleanup").await;
        let ch = within("channel.open", conn.open_channel(None))
            .await
            .expect("channel");
        let _ = within(
            "queue.delete",
            ch.queue_delete(QueueDeleteArguments::new(queue)),
        )
        .await;
        let _ = within("connection.close", conn.close()).await;
    });
}

static FIXTURE: OnceLock<()> = OnceLock::new();

/// Makes the fixture's entities once, keeps its connection open for the rest of the run,
/// and waits until the API shows all of it.
pub fn fixture(t: &'static Target) {
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            runtime().block_on(async move {
                // Held until the process exits.
                let _fixture = build_fixture(t).await;
                let _ = tx.send(());
                std::future::pending::<()>().await;
            })
        });
        rx.recv_timeout(SETTLE_LIMIT)
            .expect("the fixture was not built in time");
        let table = |a: &[&str]| strings(a);
        wait_until(
            t,
            &table(&["-q", "list_queues", "name", "messages", "consumers"]),
            "ctl-q1\t3\t0\n",
        );
        wait_until(
            t,
            &table(&["-q", "list_queues", "name", "messages", "consumers"]),
            "ctl-q2\t0\t1\n",
        );
        wait_until(
            t,
            &table(&["-q", "list_consumers", "consumer_tag"]),
            "ctl-ctag",
        );
        wait_until(t, &table(&["-q", "list_channels", "consumer_count"]), "1\n");
        wait_for_line(
            t,
            &table(&["-s", "list_connections", "channels", "client_properties"]),
            "the fixture connection with 2 channels",
            |out| {
                out.lines()
                    .any(|l| l.starts_with("2\t") && l.contains("coneyctl-fixture"))
            },
        );
    });
}

/// The fixture's connection, channels and consumer, to be kept open.
type Fixture = (
    Connection,
    Vec<Channel>,
    tokio::sync::mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
);

async fn build_fixture(t: &Target) -> Fixture {
    let conn = connect(t, "coneyctl-fixture").await;
    let ch = within("channel.open", conn.open_channel(None))
        .await
        .expect("channel 1");
    // A durable queue left by an earlier run against the same broker would hold its messages.
    for queue in ["ctl-q1", "ctl-q2"] {
        within("delete", ch.queue_delete(QueueDeleteArguments::new(queue)))
            .await
            .expect("queue.delete");
    }
    let q1 = QueueDeclareArguments::durable_client_named("ctl-q1").finish();
    within("declare ctl-q1", ch.queue_declare(q1))
        .await
        .expect("ctl-q1");
    let mut args = FieldTable::new();
    args.insert("x-max-length".try_into().unwrap(), FieldValue::I(10));
    let q2 = QueueDeclareArguments::new("ctl-q2")
        .arguments(args)
        .finish();
    within("declare ctl-q2", ch.queue_declare(q2))
        .await
        .expect("ctl-q2");
    let ex = ExchangeDeclareArguments::new("ctl-ex", "topic")
        .durable(true)
        .finish();
    within("declare ctl-ex", ch.exchange_declare(ex))
        .await
        .expect("ctl-ex");
    let mut bind_args = FieldTable::new();
    bind_args.insert(
        "k".try_into().unwrap(),
        FieldValue::S(LongStr::try_from("v".to_string()).unwrap()),
    );
    let bind = QueueBindArguments::new("ctl-q1", "ctl-ex", "a.*")
        .arguments(bind_args)
        .finish();
    within("bind", ch.queue_bind(bind)).await.expect("bind");
    for _ in 0..3 {
        ch.basic_publish(
            BasicProperties::default(),
            b"fixture".to_vec(),
            BasicPublishArguments::new("", "ctl-q1"),
        )
        .await
        .expect("publish");
    }
    let ch2 = within("channel.open", conn.open_channel(None))
        .await
        .expect("channel 2");
    within("qos", ch2.basic_qos(BasicQosArguments::new(0, 5, false)))
        .await
        .expect("qos");
    let consume = BasicConsumeArguments::new("ctl-q2", "ctl-ctag");
    let (_, rx) = within("consume", ch2.basic_consume_rx(consume))
        .await
        .expect("consume");
    (conn, vec![ch, ch2], rx)
}

// ---------------------------------------------------------------------------------------
// A connection whose server-sent close is recorded
// ---------------------------------------------------------------------------------------

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub struct CloseRecorder {
    pub tx: UnboundedSender<(u16, String)>,
}

impl ConnectionCallback for CloseRecorder {
    fn close<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
        close: Close,
    ) -> BoxFut<'async_trait, Result<(), amqprs::error::Error>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let _ = self
            .tx
            .send((close.reply_code(), close.reply_text().clone()));
        Box::pin(async { Ok(()) })
    }

    fn blocked<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        _connection: &'life1 Connection,
        _reason: String,
    ) -> BoxFut<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
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

pub fn recorder() -> (
    CloseRecorder,
    tokio::sync::mpsc::UnboundedReceiver<(u16, String)>,
) {
    let (tx, rx) = unbounded_channel();
    (CloseRecorder { tx }, rx)
}
