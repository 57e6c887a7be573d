//! The management API on a broker with several users and vhosts (issue 12 with issue 13's
//! API): logins against the users table with each user's tags, and RabbitMQ 3.10's rules for
//! whose connections and channels a user sees (`filter_user`) or may close
//! (`is_authorized_user`): its own, or everyone's with monitoring (to look) or administrator.
//! The expected answers were observed on RabbitMQ 3.10 with rabbitmq_management; these tests
//! run on a private coney only (they set users up through its `load_definitions`).

use crate::access_support::{login, Setup};
use crate::support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request to the management API as `user`/`password`: (status, JSON body or Null).
fn call(port: u16, method: &str, path: &str, user: &str, password: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the management API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = base64(format!("{user}:{password}").as_bytes());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A chunked body's data (the listings are streamed that way).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// (user, vhost) of each row of a listing, sorted.
fn owners(rows: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .as_array()
        .expect("a listing")
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap_or("").into(),
                r["vhost"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    v.sort();
    v
}

fn quote(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const NOT_YOURS: &str = "User not authorised to access object";

/// API logins use the users table: a user from a definitions file logs in with its password
/// and whoami shows its tags; a wrong password is 401. A management-tagged user lists only its
/// own connections and channels (with their vhost), gets 401 "User not authorised to access
/// object" for another user's connection (GET or DELETE) and may close its own; a monitoring
/// user lists everyone's.
#[tokio::test]
async fn management_users_see_their_own_connections() {
    if std::env::var("CONEY_TEST_ADDR").is_ok() {
        return; // users are set up through coney's load_definitions
    }
    let http = free_port();
    let v = unique("mv");
    let b = Setup::new()
        .vhost(&v)
        .user_tagged("mgr", "pw", &["management"])
        .user_tagged("mon", "pw", &["monitoring"])
        .permit("mgr", &v, ".*", ".*", ".*")
        .permit("mon", "/", ".*", ".*", ".*")
        .config(&format!("management.tcp.port = {http}"))
        .start();
    let c_mgr = login(&b, "mgr", "pw", &v).await;
    let c_mon = login(&b, "mon", "pw", "/").await;
    let _ch_mgr = c_mgr.channel().await;
    let _ch_mon = c_mon.channel().await;

    let (st, who) = call(http, "GET", "/api/whoami", "mgr", "pw");
    assert_eq!(
        (st, who["name"].as_str(), who["tags"].clone()),
        (200, Some("mgr"), serde_json::json!(["management"]))
    );
    assert_eq!(call(http, "GET", "/api/whoami", "mgr", "wrong").0, 401);

    let mine = vec![("mgr".to_string(), v.clone())];
    let both = vec![
        ("mgr".to_string(), v.clone()),
        ("mon".to_string(), "/".to_string()),
    ];
    let (st, rows) = call(http, "GET", "/api/connections", "mgr", "pw");
    assert_eq!((st, owners(&rows)), (200, mine.clone()));
    let (st, rows) = call(http, "GET", "/api/channels", "mgr", "pw");
    assert_eq!((st, owners(&rows)), (200, mine));
    let (st, all) = call(http, "GET", "/api/connections", "mon", "pw");
    assert_eq!((st, owners(&all)), (200, both.clone()));
    let (_, chans) = call(http, "GET", "/api/channels", "mon", "pw");
    assert_eq!(owners(&chans), both);

    let name_of = |user: &str| {
        all.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["user"] == user)
            .expect("row")["name"]
            .as_str()
            .expect("name")
            .to_string()
    };
    let (other, own) = (quote(&name_of("mon")), quote(&name_of("mgr")));
    for method in ["GET", "DELETE"] {
        let (st, body) = call(
            http,
            method,
            &format!("/api/connections/{other}"),
            "mgr",
            "pw",
        );
        assert_eq!(
            (st, body["reason"].as_str()),
            (401, Some(NOT_YOURS)),
            "{method} another's"
        );
    }
    assert_eq!(
        call(http, "GET", &format!("/api/connections/{own}"), "mgr", "pw").0,
        200
    );
    assert_eq!(
        call(
            http,
            "DELETE",
            &format!("/api/connections/{own}"),
            "mgr",
            "pw"
        )
        .0,
        204
    );
    let (_, left) = call(http, "GET", "/api/connections", "mon", "pw");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = owners(&left);
    while left.len() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = owners(&call(http, "GET", "/api/connections", "mon", "pw").1);
    }
    assert_eq!(
        left,
        vec![("mon".to_string(), "/".to_string())],
        "mgr's connection closed"
    );
}
