//! coneyctl against a fake management API on a loopback socket (no broker needed): the
//! requests it sends (paths, encoding, auth, bodies, headers), where it finds the API (config
//! file, CONEYCTL_URL, flags), and its exit codes when the API is absent, silent, refuses the
//! login or answers garbage; usage errors and help.

use crate::support::{free_port, run_bounded, Run};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ACCEPT_LIMIT: Duration = Duration::from_secs(20);

/// A request as the fake API received it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn read_request(s: &mut TcpStream) -> Seen {
    s.set_read_timeout(Some(ACCEPT_LIMIT)).expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read request");
        assert!(n > 0, "the client closed before the request ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let seen = Seen {
        head,
        body: Vec::new(),
    };
    let len: usize = seen
        .header("content-length")
        .map(|l| l.parse().expect("content-length"))
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).expect("read body");
        assert!(n > 0, "the client closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Seen { body, ..seen }
}

/// Answers one connection per entry of `answers`, in order; returns what it received.
fn fake_api(answers: Vec<Vec<u8>>) -> (u16, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + ACCEPT_LIMIT;
        let mut seen = Vec::new();
        for answer in answers {
            let mut s = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "coneyctl never connected");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            s.set_nonblocking(false).expect("blocking");
            seen.push(read_request(&mut s));
            s.write_all(&answer).expect("answer");
        }
        seen
    });
    (port, handle)
}

fn json_answer(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked_answer(body: &str) -> Vec<u8> {
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

fn no_content() -> Vec<u8> {
    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
}

/// coneyctl with the given environment URL (None: unset) and no other endpoint settings.
fn run(url: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coneyctl"));
    cmd.args(args).env_remove("CONEYCTL_URL");
    if let Some(u) = url {
        cmd.env("CONEYCTL_URL", u);
    }
    run_bounded(&mut cmd, stdin)
}

fn url(port: u16) -> String {
    format!("http://guest:guest@127.0.0.1:{port}")
}

/// The config file's management.tcp.* and default_user/default_pass find the API and log in
/// (other broker keys are left to the broker); a chunked answer is read whole.
#[test]
fn config_file_names_port_and_credentials() {
    let (port, api) = fake_api(vec![chunked_answer(
        r#"[{"messages":1,"name":"a"},{"messages":22,"name":"b\tc"}]"#,
    )]);
    let dir = std::env::temp_dir().join(format!("coneyctl-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("coney.conf");
    std::fs::write(
        &conf,
        format!(
            "listeners.tcp.default = 127.0.0.1:5672\nmanagement.tcp.ip = 127.0.0.1\n\
             management.tcp.port = {port}  # the API\ndefault_user = fileuser\ndefault_pass = filepass\n"
        ),
    )
    .unwrap();
    let r = run(
        None,
        &["--config", conf.to_str().unwrap(), "list_queues"],
        None,
    );
    let seen = api.join().expect("fake api");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((r.code, r.err.as_str()), (0, ""), "stdout: {}", r.out);
    assert_eq!(
        r.out,
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\na\t1\nb\tc\t22\n"
    );
    assert_eq!(
        seen[0].line(),
        "GET /api/queues/%2F?columns=messages,name HTTP/1.1"
    );
    assert_eq!(
        seen[0].header("host").as_deref(),
        Some(&*format!("127.0.0.1:{port}"))
    );
    // base64("fileuser:filepass")
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Basic ZmlsZXVzZXI6ZmlsZXBhc3M=")
    );
}

/// --port beats CONEYCTL_URL, whose credentials are used; -p vhosts are percent-encoded.
#[test]
fn flags_beat_the_url_and_vhosts_are_encoded() {
    let (port, api) = fake_api(vec![json_answer("200 OK", "[]")]);
    let stale = format!("http://urluser:urlpass@127.0.0.1:{}", free_port());
    let r = run(
        Some(&stale),
        &["--port", &port.to_string(), "list_exchanges", "-p", "a/b c"],
        None,
    );
    let seen = api.join().expect("fake api");
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "Listing exchanges for vhost a/b c ...\n")
    );
    assert_eq!(
        seen[0].line(),
        "GET /api/exchanges/a%2Fb%20c?columns=name,type HTTP/1.1"
    );
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Basic dXJsdXNlcjp1cmxwYXNz")
    );
}

/// set_policy and close_connection send the API's method, path, JSON body and X-Reason.
#[test]
fn mutations_send_the_apis_requests() {
    let (port, api) = fake_api(vec![no_content(), no_content()]);
    let u = url(port);
    let r = run(
        Some(&u),
        &[
            "set_policy",
            "-p",
            "v",
            "--priority",
            "2",
            "--apply-to",
            "queues",
            "p1",
            "^q",
            r#"{"max-length":5}"#,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run(
        Some(&u),
        &["close_connection", "127.0.0.1:5 -> 127.0.0.1:6", "bye now"],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Closing connection 127.0.0.1:5 -> 127.0.0.1:6, reason: bye now...\n"
    );
    let seen = api.join().expect("fake api");
    assert_eq!(seen[0].line(), "PUT /api/policies/v/p1 HTTP/1.1");
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"pattern": "^q", "definition": {"max-length": 5},
                           "priority": 2, "apply-to": "queues"})
    );
    assert_eq!(
        seen[1].line(),
        "DELETE /api/connections/127.0.0.1%3A5%20-%3E%20127.0.0.1%3A6 HTTP/1.1"
    );
    assert_eq!(seen[1].header("x-reason").as_deref(), Some("bye now"));
}

/// Nothing listening: exit 69 with the address in the message.
#[test]
fn absent_api_exits_69() {
    let port = free_port();
    let r = run(Some(&url(port)), &["list_queues"], None);
    assert_eq!(r.code, 69, "{r:?}");
    assert!(
        r.err.starts_with(&format!(
            "Error:\nunable to connect to the management API at http://127.0.0.1:{port}: "
        )),
        "{}",
        r.err
    );
    // The informational lines were printed before the request, as rabbitmqctl does.
    assert_eq!(
        r.out,
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\n"
    );
}

/// An API that accepts and never answers: --timeout bounds the wait, exit 75.
#[test]
fn silent_api_times_out_with_75() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let r = run(
        Some(&url(port)),
        &["--timeout", "1", "-q", "list_vhosts"],
        None,
    );
    let took = started.elapsed();
    drop(listener);
    assert_eq!(r.code, 75, "{r:?}");
    assert_eq!(
        r.err,
        format!(
            "Error:\noperation list_vhosts on the management API at http://127.0.0.1:{port} \
             timed out. Timeout value used: 1000\n"
        )
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// A refused login (RabbitMQ's 401 answer) exits 69 with the API's reason.
#[test]
fn refused_login_exits_69() {
    let (port, api) = fake_api(vec![format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: 50\r\ncontent-type: application/json\r\n\
         www-authenticate: Basic realm=\"RabbitMQ Management\"\r\n\r\n{}",
        r#"{"error":"not_authorized","reason":"Login failed"}"#
    )
    .into_bytes()]);
    let r = run(Some(&url(port)), &["-q", "list_users"], None);
    api.join().expect("fake api");
    assert_eq!(r.code, 69);
    assert_eq!(
        r.err,
        format!(
            "Error:\nthe management API at http://127.0.0.1:{port} refused user 'guest': Login failed\n"
        )
    );
}

/// Garbage and a closed connection are errors with exit codes, never a crash or a partial
/// listing.
#[test]
fn garbage_answers_are_errors() {
    let (port, api) = fake_api(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nnotjs".to_vec(),
        Vec::new(),
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n[{\"name\"".to_vec(),
    ]);
    let u = url(port);
    let r = run(Some(&u), &["-q", "list_vhosts"], None);
    assert_eq!(r.code, 70, "{r:?}");
    assert!(r.err.contains("answered something unexpected"), "{}", r.err);
    let r = run(Some(&u), &["-q", "list_vhosts"], None);
    assert_eq!(r.code, 69, "{r:?}");
    assert!(r.err.contains("without answering"), "{}", r.err);
    let r = run(Some(&u), &["-q", "list_vhosts"], None);
    assert_eq!((r.code, r.out.as_str()), (69, ""), "{r:?}");
    api.join().expect("fake api");
}

/// Usage errors exit 64 (65 for a missing file, 78 for an unreadable --config) before any
/// request: the URL points at a closed port, which would give 69.
#[test]
fn usage_errors_exit_64_without_a_request() {
    let u = url(free_port());
    let usage = |cmd: &str| {
        format!(
            "coneyctl [--host <host>] [--port <port>] [--username <username>] \
             [--password <password>] [--quiet] {cmd}"
        )
    };
    let r = run(Some(&u), &["add_user"], None);
    assert_eq!(r.code, 64);
    assert_eq!(
        r.err,
        format!(
            "Error (argument validation): not enough arguments.\nArguments given:\n\tadd_user\n\n\
             Usage\n\n{} <username> <password> [--timeout <timeout>]\n",
            usage("add_user")
        )
    );
    let r = run(Some(&u), &["list_queues", "name", "nosuch,other"], None);
    assert_eq!(r.code, 64);
    assert!(r
        .err
        .starts_with("Error (argument validation): Info key(s) nosuch,other are not supported\n"));
    for (args, code) in [
        (&["nosuch"][..], 64),
        (&["-n", "rabbit@h", "list_queues"], 64),
        (&["--formatter", "csv", "list_queues"], 64),
        (&["add_user", "-p", "v", "u", "p"], 64),
        (&["list_queues", "--bogus"], 64),
        (&["list_queues", "pid"], 64),
        (&["import_definitions", "/nonexistent/defs.json"], 65),
        (&["--config", "/nonexistent/coney.conf", "list_queues"], 78),
    ] {
        let r = run(Some(&u), args, None);
        assert_eq!((r.code, r.out.as_str()), (code, ""), "{args:?}: {}", r.err);
    }
    let r = run(Some(&u), &["nosuch"], None);
    assert!(
        r.err.starts_with("\nCommand 'nosuch' not found. \n"),
        "{}",
        r.err
    );
}

/// `help` lists every command; `help CMD` and `CMD --help` show its usage and columns.
#[test]
fn help_lists_commands_and_columns() {
    let u = url(free_port());
    let r = run(Some(&u), &["help"], None);
    assert_eq!(r.code, 0);
    for cmd in [
        "list_queues",
        "list_exchanges",
        "list_bindings",
        "list_connections",
        "list_channels",
        "list_consumers",
        "list_users",
        "add_user",
        "delete_user",
        "change_password",
        "set_user_tags",
        "list_vhosts",
        "add_vhost",
        "delete_vhost",
        "set_permissions",
        "clear_permissions",
        "list_permissions",
        "list_user_permissions",
        "set_policy",
        "clear_policy",
        "list_policies",
        "purge_queue",
        "delete_queue",
        "close_connection",
        "export_definitions",
        "import_definitions",
        "status",
        "help",
    ] {
        assert!(r.out.contains(&format!("\n   {cmd} ")), "help lacks {cmd}");
    }
    let h = run(Some(&u), &["help", "list_queues"], None);
    assert_eq!(h.code, 0);
    assert!(h
        .out
        .contains("must be one of name, durable, auto_delete, arguments, policy"));
    assert_eq!(run(Some(&u), &["list_queues", "--help"], None), h);
    assert_eq!(run(None, &["--help"], None).out, r.out);
    assert_eq!(run(Some(&u), &["help", "nosuch"], None).code, 64);
}
