//! amqprs over TLS (its `tls` feature: tokio-rustls, a client stack independent of the
//! broker's listener code) against coney's amqps listener, with a throw-away CA, server and
//! client certificate made by the openssl command at test time, as tests/tls/run.py makes
//! them. coney only: the listener is configured here (tests/tls/run.py holds the tests that
//! also run against RabbitMQ).

use crate::support::*;
use amqprs::connection::OpenConnectionArguments;
use amqprs::security::SecurityCredentials;
use amqprs::tls::TlsAdaptor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs openssl with `args` in `dir`, bounded by timeout(1); panics with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("timeout")
        .arg("60")
        .arg("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (scripts/test-tls.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An EC P-256 key NAME.key and a certificate NAME.pem for `subject`, signed by ca.pem (or
/// self-signed as the CA when `name` is "ca").
fn certificate(dir: &Path, name: &str, subject: &str, ext: &str) {
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    if name == "ca" {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        return;
    }
    let csr = format!("{name}.csr");
    let extfile = format!("{name}.ext");
    std::fs::write(
        dir.join(&extfile),
        format!("basicConstraints=CA:FALSE\n{ext}\n"),
    )
    .expect("write ext");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-out", &csr, "-subj", subject],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// A temp dir with the CA, a server certificate for localhost and a client certificate
/// whose common name is guest.
fn pki() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("coney-tls-amqprs"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    certificate(&dir, "ca", "/CN=coney amqprs test CA", "");
    certificate(
        &dir,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    );
    certificate(
        &dir,
        "client",
        "/CN=guest/O=coney test",
        "extendedKeyUsage=clientAuth",
    );
    dir
}

/// Publishes a persistent message with confirms on a fresh queue and consumes it back.
async fn round_trip(args: &OpenConnectionArguments, b: &Broker) {
    let conn = b.connect_with(args).await.expect("connection over TLS");
    let mut ch = conn.channel().await;
    let q = unique("tls-amqprs");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    let body = vec![b'x'; 200_000]; // several TLS records and AMQP frames
    ch.publish_confirmed("", &q, &body).await;
    let (_tag, mut rx) = ch.consume(&q, true).await;
    let got = next_delivery(&mut rx).await;
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body, "body changed on the way");
    conn.close().await;
}

/// amqprs over amqps publishes and consumes: once with PLAIN and no client certificate, once
/// with SASL EXTERNAL and a client certificate whose CN names guest
/// (ssl_cert_login_from = common_name); a client that does not trust the CA fails.
#[tokio::test]
async fn amqprs_round_trip_over_tls_plain_and_external() {
    if std::env::var("CONEY_TEST_ADDR").is_ok() {
        eprintln!("SKIP: coney only (the TLS listener is configured by this test)");
        return;
    }
    let dir = pki();
    let tls_port = free_port();
    let conf = dir.join("coney.conf");
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.cacertfile = {}\n\
             ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n\
             auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = EXTERNAL\n\
             ssl_cert_login_from = common_name\n\
             management.enabled = false\nprometheus.enabled = false\n",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
    )
    .expect("write config");
    let b = Broker::start_with(&["--config", &conf.display().to_string()]);
    let ca = dir.join("ca.pem");

    let mut plain = OpenConnectionArguments::new("127.0.0.1", tls_port, "guest", "guest");
    plain.heartbeat(600).tls_adaptor(
        TlsAdaptor::without_client_auth(Some(&ca), "localhost".into()).expect("TLS adaptor"),
    );
    round_trip(&plain, &b).await;

    let mut external = OpenConnectionArguments::new("127.0.0.1", tls_port, "", "");
    external
        .heartbeat(600)
        .credentials(SecurityCredentials::new_external())
        .tls_adaptor(
            TlsAdaptor::with_client_auth(
                Some(&ca),
                &dir.join("client.pem"),
                &dir.join("client.key"),
                "localhost".into(),
            )
            .expect("TLS adaptor with client certificate"),
        );
    round_trip(&external, &b).await;

    // The system roots do not include the throw-away CA: the handshake must fail.
    let mut untrusted = OpenConnectionArguments::new("127.0.0.1", tls_port, "guest", "guest");
    untrusted.heartbeat(600).tls_adaptor(
        TlsAdaptor::without_client_auth(None, "localhost".into()).expect("TLS adaptor"),
    );
    assert!(
        b.connect_with(&untrusted).await.is_err(),
        "connected without trusting the CA"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
