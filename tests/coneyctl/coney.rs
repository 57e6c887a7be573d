//! coneyctl against coney's own management API: coney started with `management.tcp.*` in its
//! config file, coneyctl finding the API through that same file (`--config`) or the URL.
//! Connections and channels, closing a connection, queues and status (/api/nodes) are tested
//! here; the live suite (`live.rs`) runs against coney with `CONEYCTL_TEST_API`.

use crate::support::{
    self, check, free_port, queue_with_messages, run_bounded, step, strings, wait, CtlMode, Run,
    Target,
};
use amqprs::channel::BasicQosArguments;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for coney to accept on both of its ports.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A private coney with a management listener, stopped (and its directory removed) on drop.
struct Coney {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    target: Target,
}

impl Coney {
    /// Starts coney from a config file naming its AMQP and management listeners on free
    /// loopback ports, and waits until both accept.
    fn start(name: &str) -> Coney {
        let dir = std::env::temp_dir().join(format!("coneyctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let (amqp, mgmt) = (free_port(), free_port());
        let config = dir.join("coney.conf");
        std::fs::write(
            &config,
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp}\ndata_dir = {}\n\
                 management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {mgmt}\n",
                dir.join("data").display()
            ),
        )
        .expect("config file");
        let log = std::fs::File::create(dir.join("coney.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_coney"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn coney");
        let mut coney = Coney {
            child,
            dir,
            config,
            target: Target {
                api: ("127.0.0.1".into(), mgmt),
                amqp: ("127.0.0.1".into(), amqp),
                user: "guest".into(),
                pass: "guest".into(),
                node_dir: None,
                ctl_mode: CtlMode::None,
            },
        };
        coney.wait_for_ports();
        coney
    }

    fn wait_for_ports(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        for port in [self.target.amqp.1, self.target.api.1] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                let log =
                    || std::fs::read_to_string(self.dir.join("coney.log")).unwrap_or_default();
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "coney exited ({status}) before accepting on {port}:\n{}",
                        log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "coney did not accept on 127.0.0.1:{port} within {START_LIMIT:?}:\n{}",
                    log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// coneyctl finding the API through the broker's config file only.
    fn ctl_with_config(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coneyctl"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("CONEYCTL_URL");
        run_bounded(&mut cmd, None)
    }
}

impl Drop for Coney {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rows of a listing whose output is compared whole (a fresh coney has nothing else).
fn listed(run: &Run) -> String {
    format!("{}{}{}", run.out, run.err, run.code)
}

/// The name and peer port of the one connection coney lists, once it shows `channels`.
fn only_connection(coney: &Coney, channels: u32) -> (String, u16) {
    let args = strings(&["-s", "list_connections", "name", "peer_port", "channels"]);
    let want = format!("\t{channels}\n");
    support::wait_for_line(
        &coney.target,
        &args,
        &format!("a connection with {channels} channels"),
        |out| out.lines().count() == 1 && out.ends_with(&want),
    );
    let out = support::coneyctl(&coney.target, &args, None).out;
    let mut cells = out.trim_end().split('\t');
    let name = cells.next().expect("name").to_string();
    let port = cells
        .next()
        .and_then(|p| p.parse().ok())
        .expect("peer_port");
    (name, port)
}

/// What coney's API serves today, found through its config file: list_connections and
/// list_channels print exactly what rabbitmqctl prints for the same client, and
/// close_connection closes it with 320 and the reason, after which it is no longer listed.
#[test]
fn connections_channels_and_close_on_coney() {
    let coney = Coney::start("conns");
    let t = &coney.target;
    let rt = support::runtime();
    // amqprs's channels and connections spawn a task when dropped, during a panic too.
    let _in_runtime = rt.enter();
    let (conn, mut closed, _channels) = rt.block_on(async {
        let conn = support::connect(t, "coneyctl-on-coney").await;
        let (recorder, rx) = support::recorder();
        conn.register_callback(recorder).await.expect("callback");
        let one = support::within("channel.open", conn.open_channel(None))
            .await
            .expect("channel 1");
        let two = support::within("channel.open", conn.open_channel(None))
            .await
            .expect("channel 2");
        support::within("qos", two.basic_qos(BasicQosArguments::new(0, 5, false)))
            .await
            .expect("qos");
        (conn, rx, vec![one, two])
    });
    let (name, port) = only_connection(&coney, 2);
    assert_eq!(
        listed(&coney.ctl_with_config(&["list_connections"])),
        format!("Listing connections ...\nuser\tpeer_host\tpeer_port\tstate\nguest\t127.0.0.1\t{port}\trunning\n0")
    );
    assert_eq!(
        listed(&coney.ctl_with_config(&[
            "list_connections", "user", "peer_host", "peer_port", "protocol", "channels", "--formatter", "json",
        ])),
        format!("[\n{{\"user\":\"guest\",\"peer_host\":[127,0,0,1],\"peer_port\":{port},\"protocol\":[0,9,1],\"channels\":2}}\n]\n0")
    );
    assert_eq!(
        listed(&coney.ctl_with_config(&[
            "list_channels", "name", "number", "user", "vhost", "confirm", "consumer_count", "prefetch_count",
        ])),
        format!("Listing channels ...\nname\tnumber\tuser\tvhost\tconfirm\tconsumer_count\tprefetch_count\n\
                 {name} (1)\t1\tguest\t/\tfalse\t0\t0\n{name} (2)\t2\tguest\t/\tfalse\t0\t5\n0")
    );
    assert_eq!(
        listed(&coney.ctl_with_config(&["close_connection", &name, "bye from coneyctl"])),
        format!("Closing connection {name}, reason: bye from coneyctl...\n0")
    );
    let (code, text) = rt
        .block_on(support::within("connection.close", closed.recv()))
        .expect("the broker's connection.close");
    assert_eq!(
        (code, text.as_str()),
        (320, "CONNECTION_FORCED - bye from coneyctl")
    );
    support::wait_for_line(
        t,
        &strings(&["-s", "list_connections"]),
        "no connection",
        |out| out.is_empty(),
    );
    assert_eq!(
        listed(&coney.ctl_with_config(&["close_connection", &name, "again"])),
        format!(
            "Closing connection {name}, reason: again...\nError:\nno connection named '{name}' \
                 (coneyctl takes the name list_connections name shows)\n69"
        )
    );
    rt.block_on(async {
        let _ = conn.close().await;
    });
}

/// list_queues through the config file prints exactly rabbitmqctl's output for the queue a
/// client made; status names the node's AMQP listener.
#[test]
fn list_queues_and_status_on_coney() {
    let coney = Coney::start("queues");
    let t = &coney.target;
    queue_with_messages(t, "coney-q", 2);
    assert_eq!(
        listed(&coney.ctl_with_config(&["list_queues"])),
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\nconey-q\t2\n0"
    );
    let status = coney.ctl_with_config(&["status"]);
    assert_eq!(
        (status.code, status.err.as_str()),
        (0, ""),
        "{}",
        status.out
    );
    assert!(
        status.out.starts_with("Status of node ")
            && status
                .out
                .contains(&format!("port: {}, protocol: amqp", t.amqp.1)),
        "{}",
        status.out
    );
}

/// purge_queue and delete_queue (with the ready count, and rabbitmqctl's error for a queue
/// that is gone) act on coney as on RabbitMQ.
#[test]
fn purge_and_delete_queue_on_coney() {
    let coney = Coney::start("verbs");
    let t = &coney.target;
    queue_with_messages(t, "coney-purge", 3);
    queue_with_messages(t, "coney-del", 2);
    check(t, &|| {}, &[
        step(&["purge_queue", "coney-purge"]).out("Purging queue 'coney-purge' in vhost '/' ...\n"),
        wait(&["-s", "list_queues"], "coney-purge\t0\n"),
        step(&["delete_queue", "coney-del"])
            .out("Deleting queue 'coney-del' on vhost '/' ...\nQueue was successfully deleted with 2 ready messages\n"),
        step(&["delete_queue", "coney-del"])
            .out("Deleting queue 'coney-del' on vhost '/' ...\n")
            .err("Error:\nQueue not found\n", 64),
    ]);
}
