//! coneyctl against coney's own management API: coney started with `management.tcp.*` in its
//! config file, coneyctl finding the API through that same file (`--config`) or the URL.
//! Ignored until coney serves the management API (issue 13 item 1); until then each of them
//! fails at the start, where coney refuses `management.tcp.port` as an unknown key.
//!
//! Run with `cargo test --release --test coneyctl -- --ignored coney::`.

use crate::support::{
    self, check, free_port, queue_with_messages, run_bounded, step, strings, wait, CtlMode, Run,
    Target,
};
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

/// The config file that starts coney's management listener is all coneyctl needs: it lists
/// the queues a client made (exactly rabbitmqctl's output) and the node's status.
#[test]
#[ignore = "issue 13: management listener"]
fn config_file_leads_to_coneys_api() {
    let coney = Coney::start("config");
    let t = &coney.target;
    queue_with_messages(t, "coney-q", 2);
    support::wait_until(t, &strings(&["-s", "list_queues"]), "coney-q\t2\n");
    let run = coney.ctl_with_config(&["list_queues"]);
    assert_eq!(
        run,
        Run {
            out: "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\n\
                  name\tmessages\nconey-q\t2\n"
                .into(),
            err: String::new(),
            code: 0,
        }
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

/// purge_queue, delete_queue (with the ready count) and close_connection (the client gets
/// 320 with the reason) act on coney as on RabbitMQ.
#[test]
#[ignore = "issue 13: management listener"]
fn queue_verbs_and_close_connection_on_coney() {
    let coney = Coney::start("verbs");
    let t = &coney.target;
    queue_with_messages(t, "coney-purge", 3);
    queue_with_messages(t, "coney-del", 2);
    support::wait_until(t, &strings(&["-s", "list_queues"]), "coney-purge\t3\n");
    check(t, &|| {}, &[
        step(&["purge_queue", "coney-purge"]).out("Purging queue 'coney-purge' in vhost '/' ...\n"),
        wait(&["-s", "list_queues"], "coney-purge\t0\n"),
        step(&["delete_queue", "coney-del"])
            .out("Deleting queue 'coney-del' on vhost '/' ...\nQueue was successfully deleted with 2 ready messages\n"),
        step(&["delete_queue", "coney-del"])
            .out("Deleting queue 'coney-del' on vhost '/' ...\n")
            .err("Error:\nQueue not found\n", 64),
    ]);

    let rt = support::runtime();
    let (conn, mut closed) = rt.block_on(async {
        let conn = support::connect(t, "coneyctl-close-me").await;
        let (recorder, rx) = support::recorder();
        conn.register_callback(recorder).await.expect("callback");
        (conn, rx)
    });
    let args = strings(&["-s", "list_connections", "name", "client_properties"]);
    support::wait_until(t, &args, "coneyctl-close-me");
    let listing = support::coneyctl(t, &args, None).out;
    let name = listing
        .lines()
        .find(|l| l.contains("coneyctl-close-me"))
        .and_then(|l| l.split('\t').next())
        .expect("the connection's name")
        .to_string();
    check(
        t,
        &|| {},
        &[
            step(&["close_connection", &name, "bye from coneyctl"]).out(&format!(
                "Closing connection {name}, reason: bye from coneyctl...\n"
            )),
        ],
    );
    let (code, text) = rt
        .block_on(support::within("connection.close", closed.recv()))
        .expect("the broker's connection.close");
    assert_eq!(
        (code, text.as_str()),
        (320, "CONNECTION_FORCED - bye from coneyctl")
    );
    rt.block_on(async {
        let _ = conn.close().await;
    });
}
