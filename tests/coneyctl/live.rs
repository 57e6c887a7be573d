//! The live suite: coneyctl against a broker's management API, each step's expected output
//! being what rabbitmqctl 3.10 prints for the same state (support.rs says how steps are also
//! run through rabbitmqctl against a RabbitMQ node). Rows of other entities (the broker's own
//! exchanges, the guest user) are filtered out, so only what the tests made is compared, in
//! any order. Ignored by default: they need a full management API, which coney serves only in
//! part so far (issue 13; `coney.rs` tests that part), and a RabbitMQ node is started only
//! where scripts/test.sh starts one.

use crate::support::{self, check, fixture, lock, step, target, wait, Target};

fn ctl_row(l: &str) -> bool {
    l.contains("ctl-")
}

fn tmp_row(l: &str) -> bool {
    l.contains("tmp-")
}

/// The broker, the fixture built, the lock held.
fn setup() -> (&'static Target, std::sync::MutexGuard<'static, ()>) {
    let t = target();
    let guard = lock();
    fixture(t);
    (t, guard)
}

/// list_queues: default and chosen columns, -q, -s, --no-table-headers, -t, JSON, and a
/// vhost that does not exist (nothing listed, exit 0), as rabbitmqctl prints them.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn list_queues() {
    let (t, _g) = setup();
    let head = "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\n";
    let wide = "name\tdurable\tauto_delete\targuments\tmessages\tmessages_ready\t\
                messages_unacknowledged\tconsumers\tstate\ttype\texclusive\n";
    let cols = [
        "list_queues",
        "name",
        "durable",
        "auto_delete",
        "arguments",
        "messages",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "state",
        "type",
        "exclusive",
    ];
    check(t, &|| {}, &[
        step(&["list_queues"])
            .out(&format!("{head}name\tmessages\nctl-q1\t3\nctl-q2\t0\n"))
            .rows(3, ctl_row),
        step(&cols)
            .out(&format!(
                "{head}{wide}ctl-q1\ttrue\tfalse\t[]\t3\t3\t0\t0\trunning\tclassic\tfalse\n\
                 ctl-q2\tfalse\tfalse\t[{{\"x-max-length\",10}}]\t0\t0\t0\t1\trunning\tclassic\tfalse\n"
            ))
            .rows(3, ctl_row)
            .always(),
        step(&["-q", "list_queues"])
            .out("name\tmessages\nctl-q1\t3\nctl-q2\t0\n")
            .rows(1, ctl_row),
        step(&["list_queues", "-s"])
            .out("ctl-q1\t3\nctl-q2\t0\n")
            .rows(0, ctl_row),
        step(&["list_queues", "--no-table-headers"])
            .out(&format!("{head}ctl-q1\t3\nctl-q2\t0\n"))
            .rows(2, ctl_row),
        step(&["list_queues", "-t", "5", "name"])
            .out("Timeout: 5.0 seconds ...\nListing queues for vhost / ...\nname\nctl-q1\nctl-q2\n")
            .rows(3, ctl_row),
        step(&["list_queues", "name,messages", "consumers", "--formatter", "json"])
            .out("[\n{\"name\":\"ctl-q1\",\"messages\":3,\"consumers\":0}\n\
                  ,{\"name\":\"ctl-q2\",\"messages\":0,\"consumers\":1}\n]\n")
            .rows(1, ctl_row),
        step(&["list_queues", "name", "arguments", "durable", "--formatter", "json"])
            .out("[\n{\"name\":\"ctl-q1\",\"arguments\":[],\"durable\":true}\n\
                  ,{\"name\":\"ctl-q2\",\"arguments\":[[\"x-max-length\",\"signedint\",10]],\"durable\":false}\n]\n")
            .rows(1, ctl_row),
        step(&["list_queues", "-p", "tmp-novhost"])
            .out("Timeout: 60.0 seconds ...\nListing queues for vhost tmp-novhost ...\n"),
    ]);
}

/// list_exchanges and list_bindings, table and JSON.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn list_exchanges_and_bindings() {
    let (t, _g) = setup();
    let bindings = "\texchange\tctl-q1\tqueue\tctl-q1\t[]\n\texchange\tctl-q2\tqueue\tctl-q2\t[]\n\
                    ctl-ex\texchange\tctl-q1\tqueue\ta.*\t[{\"k\",\"v\"}]\n";
    check(t, &|| {}, &[
        step(&["list_exchanges"])
            .out("Listing exchanges for vhost / ...\nname\ttype\nctl-ex\ttopic\n")
            .rows(2, ctl_row),
        step(&["list_exchanges", "name", "type", "durable", "auto_delete", "internal", "arguments", "policy"])
            .out("Listing exchanges for vhost / ...\nname\ttype\tdurable\tauto_delete\tinternal\targuments\tpolicy\n\
                  ctl-ex\ttopic\ttrue\tfalse\tfalse\t[]\t\n")
            .rows(2, ctl_row),
        step(&["list_exchanges", "--formatter", "json"])
            .out("[\n{\"name\":\"ctl-ex\",\"type\":\"topic\"}\n]\n")
            .rows(1, ctl_row),
        step(&["list_bindings"])
            .out(&format!(
                "Listing bindings for vhost /...\nsource_name\tsource_kind\tdestination_name\t\
                 destination_kind\trouting_key\targuments\n{bindings}"
            ))
            .rows(2, ctl_row)
            .always(),
        step(&["-q", "list_bindings", "source_name", "routing_key", "arguments", "--formatter", "json"])
            .out("[\n{\"source_name\":\"\",\"routing_key\":\"ctl-q1\",\"arguments\":[]}\n\
                  {\"source_name\":\"\",\"routing_key\":\"ctl-q2\",\"arguments\":[]}\n\
                  {\"source_name\":\"ctl-ex\",\"routing_key\":\"a.*\",\"arguments\":[[\"k\",\"longstr\",\"v\"]]}\n]\n")
            .rows(1, ctl_row),
    ]);
}

/// The fixture connection's name, peer port and channel names as the API shows them.
fn fixture_connection(t: &Target) -> (String, String) {
    let run = support::coneyctl(
        t,
        &support::strings(&[
            "-s",
            "list_connections",
            "name",
            "peer_port",
            "client_properties",
        ]),
        None,
    );
    let line = run
        .out
        .lines()
        .find(|l| l.contains("coneyctl-fixture"))
        .unwrap_or_else(|| panic!("no fixture connection in:\n{}", run.out));
    let mut cells = line.split('\t');
    let name = cells.next().unwrap().to_string();
    let port = cells.next().unwrap().to_string();
    assert!(name.contains(&format!(":{port} -> ")), "{name} vs {port}");
    (name, port)
}

/// list_connections, list_channels and list_consumers: rabbitmqctl's default columns
/// (its pids are the API's names in coneyctl, so those columns are compared with coneyctl
/// only) and JSON addresses.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn list_connections_channels_consumers() {
    let (t, _g) = setup();
    let (name, port) = fixture_connection(t);
    let ours = |port: &str| {
        let port = port.to_string();
        move |l: &str| l.contains(&port)
    };
    check(t, &|| {}, &[
        step(&["list_connections"])
            .out(&format!("Listing connections ...\nuser\tpeer_host\tpeer_port\tstate\nguest\t127.0.0.1\t{port}\trunning\n"))
            .rows(2, ours(&port))
            .always(),
        step(&["list_connections", "user", "peer_host", "peer_port", "protocol", "channels", "--formatter", "json"])
            .out(&format!("[\n{{\"user\":\"guest\",\"peer_host\":[127,0,0,1],\"peer_port\":{port},\"protocol\":[0,9,1],\"channels\":2}}\n]\n"))
            .rows(1, ours(&port)),
        step(&["list_channels"])
            .out(&format!("Listing channels ...\npid\tuser\tconsumer_count\tmessages_unacknowledged\n\
                           {name} (1)\tguest\t0\t0\n{name} (2)\tguest\t1\t0\n"))
            .rows(2, ours(&port))
            .coneyctl_only(),
        step(&["list_channels", "name", "number", "user", "vhost", "confirm", "consumer_count", "prefetch_count"])
            .out(&format!("Listing channels ...\nname\tnumber\tuser\tvhost\tconfirm\tconsumer_count\tprefetch_count\n\
                           {name} (1)\t1\tguest\t/\tfalse\t0\t0\n{name} (2)\t2\tguest\t/\tfalse\t1\t5\n"))
            .rows(2, ours(&port)),
        step(&["list_consumers"])
            .out(&format!("Listing consumers in vhost / ...\nqueue_name\tchannel_pid\tconsumer_tag\t\
                           ack_required\tprefetch_count\tactive\targuments\nctl-q2\t{name} (2)\tctl-ctag\ttrue\t5\ttrue\t[]\n"))
            .rows(2, ctl_row)
            .coneyctl_only(),
        step(&["list_consumers", "queue_name", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"])
            .out("Listing consumers in vhost / ...\nqueue_name\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments\n\
                  ctl-q2\tctl-ctag\ttrue\t5\ttrue\t[]\n")
            .rows(2, ctl_row),
        step(&["list_consumers", "queue_name", "consumer_tag", "--formatter", "json"])
            .out("[\n{\"queue_name\":\"ctl-q2\",\"consumer_tag\":\"ctl-ctag\"}\n]\n")
            .rows(1, ctl_row),
    ]);
}

/// Users: add (and "already exists", 70), tags, list, change_password (the new one logs in,
/// the old one is refused), delete (and "does not exist", 67); the password from stdin.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn users() {
    let (t, _g) = setup();
    let done = "Done. Don't forget to grant the user permissions to some virtual hosts! \
                See 'coneyctl help set_permissions' to learn more.\n";
    let login = |pass: &str| {
        support::strings(&[
            "-q",
            "--username",
            "tmp-user",
            "--password",
            pass,
            "list_vhosts",
        ])
    };
    let users_row = |l: &str| l.starts_with("tmp-user") || l.contains("\"tmp-user\"");
    let clean = || support::quietly(t, &[&["delete_user", "tmp-user"]]);
    check(t, &clean, &[
        step(&["add_user", "tmp-user", "pw1"])
            .out(&format!("Adding user \"tmp-user\" ...\n{done}")),
        step(&["add_user", "tmp-user", "pw1"])
            .out("Adding user \"tmp-user\" ...\n")
            .err("Error:\nUser \"tmp-user\" already exists\n", 70)
            .always(),
        step(&["set_user_tags", "tmp-user", "administrator", "management"])
            .out("Setting tags for user \"tmp-user\" to [administrator, management] ...\n"),
        step(&["list_users"])
            .out("Listing users ...\nuser\ttags\ntmp-user\t[administrator, management]\n")
            .rows(2, users_row),
        step(&["list_users", "--formatter", "json"])
            .out("[\n{\"user\":\"tmp-user\",\"tags\":[\"administrator\",\"management\"]}\n]\n")
            .rows(1, users_row),
        step(&["change_password", "tmp-user"])
            .stdin("pw2\n")
            .out("Changing password for user \"tmp-user\" ...\n")
            .coneyctl_only(),
        support::Step { args: login("pw2"), ..step(&[]).out("name\n/\n").rows(1, |l| l == "/\n").coneyctl_only() },
        support::Step { args: login("pw1"), ..step(&[]).err(
            &format!("Error:\nthe management API at http://{}:{} refused user 'tmp-user': Login failed\n", t.api.0, t.api.1), 69).coneyctl_only() },
        step(&["change_password", "tmp-user", "pw1"])
            .out("Changing password for user \"tmp-user\" ...\n"),
        step(&["change_password", "tmp-nobody", "x"])
            .out("Changing password for user \"tmp-nobody\" ...\n")
            .err("Error:\nUser \"tmp-nobody\" does not exist\n", 67),
        step(&["set_user_tags", "tmp-nobody", "x"])
            .out("Setting tags for user \"tmp-nobody\" to [x] ...\n")
            .err("Error:\nUser \"tmp-nobody\" does not exist\n", 67),
        step(&["-q", "delete_user", "tmp-user"]),
        step(&["delete_user", "tmp-user"])
            .out("Deleting user \"tmp-user\" ...\n")
            .err("Error:\nUser \"tmp-user\" does not exist\n", 67)
    ]);
}

/// Vhosts and permissions, with rabbitmqctl's errors for a missing vhost or user.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn vhosts_and_permissions() {
    let (t, _g) = setup();
    let clean = || {
        support::quietly(
            t,
            &[
                &["delete_user", "tmp-puser"],
                &["delete_vhost", "tmp-vhost"],
            ],
        )
    };
    check(t, &clean, &[
        step(&["add_vhost", "tmp-vhost"]).out("Adding vhost \"tmp-vhost\" ...\n"),
        step(&["add_vhost", "tmp-vhost"]).out("Adding vhost \"tmp-vhost\" ...\n"),
        step(&["list_vhosts", "name", "tracing"])
            .out("Listing vhosts ...\nname\ttracing\ntmp-vhost\tfalse\n")
            .rows(2, tmp_row),
        step(&["list_vhosts", "--formatter", "json"])
            .out("[\n{\"name\":\"tmp-vhost\"}\n]\n")
            .rows(1, tmp_row),
        step(&["-q", "add_user", "tmp-puser", "pw"]),
        step(&["set_permissions", "-p", "tmp-vhost", "tmp-puser", "^tmp-.*", ".*", ""])
            .out("Setting permissions for user \"tmp-puser\" in vhost \"tmp-vhost\" ...\n"),
        step(&["list_permissions", "-p", "tmp-vhost"])
            .out("Listing permissions for vhost \"tmp-vhost\" ...\nuser\tconfigure\twrite\tread\ntmp-puser\t^tmp-.*\t.*\t\n")
            .rows(2, tmp_row)
            .always(),
        step(&["list_user_permissions", "tmp-puser"])
            .out("Listing permissions for user \"tmp-puser\" ...\nvhost\tconfigure\twrite\tread\ntmp-vhost\t^tmp-.*\t.*\t\n"),
        step(&["list_user_permissions", "tmp-puser", "--formatter", "json"])
            .out("[\n{\"vhost\":\"tmp-vhost\",\"configure\":\"^tmp-.*\",\"write\":\".*\",\"read\":\"\"}\n]\n"),
        step(&["set_permissions", "-p", "tmp-novhost", "tmp-puser", ".*", ".*", ".*"])
            .out("Setting permissions for user \"tmp-puser\" in vhost \"tmp-novhost\" ...\n")
            .err("Error:\nVirtual host tmp-novhost does not exist\n", 69),
        step(&["set_permissions", "-p", "tmp-vhost", "tmp-nobody", ".*", ".*", ".*"])
            .out("Setting permissions for user \"tmp-nobody\" in vhost \"tmp-vhost\" ...\n")
            .err("Error:\nUser tmp-nobody does not exist\n", 67),
        step(&["list_user_permissions", "tmp-nobody"])
            .out("Listing permissions for user \"tmp-nobody\" ...\n")
            .err("Error:\n{:no_such_user, \"tmp-nobody\"}\n", 69),
        step(&["list_permissions", "-p", "tmp-novhost"])
            .out("Listing permissions for vhost \"tmp-novhost\" ...\n")
            .err("Virtual host 'tmp-novhost' does not exist\n", 65),
        step(&["clear_permissions", "-p", "tmp-vhost", "tmp-puser"])
            .out("Clearing permissions for user \"tmp-puser\" in vhost \"tmp-vhost\" ...\n"),
        step(&["clear_permissions", "-p", "tmp-vhost", "tmp-puser"])
            .out("Clearing permissions for user \"tmp-puser\" in vhost \"tmp-vhost\" ...\n"),
        step(&["clear_permissions", "-p", "tmp-novhost", "tmp-puser"])
            .out("Clearing permissions for user \"tmp-puser\" in vhost \"tmp-novhost\" ...\n")
            .err("Error:\nVirtual host tmp-novhost does not exist\n", 69),
        step(&["clear_permissions", "-p", "tmp-vhost", "tmp-nobody"])
            .out("Clearing permissions for user \"tmp-nobody\" in vhost \"tmp-vhost\" ...\n")
            .err("Error:\nUser tmp-nobody does not exist\n", 67),
        step(&["-q", "delete_user", "tmp-puser"]),
        step(&["delete_vhost", "tmp-vhost"]).out("Deleting vhost \"tmp-vhost\" ...\n"),
        step(&["delete_vhost", "tmp-vhost"])
            .out("Deleting vhost \"tmp-vhost\" ...\n")
            .err("Virtual host 'tmp-vhost' does not exist\n", 65)
    ]);
}

/// Policies: set with priority and apply-to, list (table, JSON, the blank line when there is
/// none), applied to a queue, the broker's validation errors, clear.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn policies() {
    let (t, _g) = setup();
    let list_head = "Listing policies for vhost \"/\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n";
    let clean = || {
        support::quietly(
            t,
            &[
                &["clear_policy", "tmp-p1"],
                &["clear_policy", "tmp-p2"],
                &["clear_policy", "tmp-p3"],
                &["clear_policy", "tmp-p4"],
            ],
        )
    };
    check(t, &clean, &[
        step(&["set_policy", "tmp-p1", "^ctl-q1$", r#"{"max-length":100}"#])
            .out("Setting policy \"tmp-p1\" for pattern \"^ctl-q1$\" to \"{\"max-length\":100}\" with priority \"0\" for vhost \"/\" ...\n"),
        step(&["set_policy", "-p", "/", "--priority", "3", "--apply-to", "queues", "tmp-p2", "^tmp-x",
               r#"{"message-ttl":1000,"dead-letter-exchange":"dlx"}"#])
            .out("Setting policy \"tmp-p2\" for pattern \"^tmp-x\" to \"{\"message-ttl\":1000,\"dead-letter-exchange\":\"dlx\"}\" with priority \"3\" for vhost \"/\" ...\n"),
        step(&["list_policies"])
            .out(&format!("{list_head}/\ttmp-p1\t^ctl-q1$\tall\t{{\"max-length\":100}}\t0\n\
                           /\ttmp-p2\t^tmp-x\tqueues\t{{\"dead-letter-exchange\":\"dlx\",\"message-ttl\":1000}}\t3\n"))
            .rows(2, tmp_row),
        step(&["list_policies", "--formatter", "json"])
            .out("[\n{\"vhost\":\"/\",\"name\":\"tmp-p1\",\"pattern\":\"^ctl-q1$\",\"apply-to\":\"all\",\"definition\":\"{\\\"max-length\\\":100}\",\"priority\":0}\n\
                  ,{\"vhost\":\"/\",\"name\":\"tmp-p2\",\"pattern\":\"^tmp-x\",\"apply-to\":\"queues\",\"definition\":\"{\\\"dead-letter-exchange\\\":\\\"dlx\\\",\\\"message-ttl\\\":1000}\",\"priority\":3}\n]\n")
            .rows(1, tmp_row),
        wait(&["-s", "list_queues", "name", "policy"], "ctl-q1\ttmp-p1\n"),
        step(&["set_policy", "tmp-p3", "^q", "{}"])
            .out("Setting policy \"tmp-p3\" for pattern \"^q\" to \"{}\" with priority \"0\" for vhost \"/\" ...\n")
            .err("Error:\nValidation failed\n\nno policy provided\n\n", 69),
        step(&["set_policy", "-p", "tmp-novhost", "tmp-p3", "^q", r#"{"max-length":1}"#])
            .out("Setting policy \"tmp-p3\" for pattern \"^q\" to \"{\"max-length\":1}\" with priority \"0\" for vhost \"tmp-novhost\" ...\n")
            .err("Virtual host 'tmp-novhost' does not exist\n", 65),
        step(&["set_policy", "tmp-p4", "^q", r#"{"bogus-key":1}"#])
            .out("Setting policy \"tmp-p4\" for pattern \"^q\" to \"{\"bogus-key\":1}\" with priority \"0\" for vhost \"/\" ...\n")
            .err("Error:\nValidation failed\n\n[{<<\"bogus-key\">>,1}] are not recognised policy settings\n\n", 69),
        step(&["set_policy", "--apply-to", "bogus", "tmp-p4", "^q", r#"{"max-length":1}"#])
            .out("Setting policy \"tmp-p4\" for pattern \"^q\" to \"{\"max-length\":1}\" with priority \"0\" for vhost \"/\" ...\n")
            .err("Error:\nValidation failed\n\napply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'\n\n", 69),
        step(&["set_policy", "tmp-p4", "^q", "notjson"])
            .out("Setting policy \"tmp-p4\" for pattern \"^q\" to \"notjson\" with priority \"0\" for vhost \"/\" ...\n")
            .err("Error:\nJSON decoding error. Reason: expected ident at line 1 column 2\n", 69)
            .coneyctl_only(),
        step(&["clear_policy", "tmp-p1"]).out("Clearing policy \"tmp-p1\" on vhost \"/\" ...\n"),
        step(&["-q", "clear_policy", "tmp-p2"]),
        step(&["clear_policy", "tmp-p1"])
            .out("Clearing policy \"tmp-p1\" on vhost \"/\" ...\n")
            .err("Error:\nParameter does not exist\n", 69),
        step(&["list_policies"]).out("Listing policies for vhost \"/\" ...\n\n"),
        step(&["list_policies", "--formatter", "json"]).out("[]\n"),
        wait(&["-s", "list_queues", "name", "policy"], "ctl-q1\t\n"),
    ]);
}

/// purge_queue and delete_queue (with the count of ready messages deleted), and their
/// errors for a queue that does not exist.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn purge_and_delete_queues() {
    let (t, _g) = setup();
    let make = || {
        support::delete_queue(t, "tmp-purge");
        support::delete_queue(t, "tmp-del");
        support::queue_with_messages(t, "tmp-purge", 3);
        support::queue_with_messages(t, "tmp-del", 2);
        support::wait_until(
            t,
            &support::strings(&["-s", "list_queues"]),
            "tmp-purge\t3\n",
        );
        support::wait_until(t, &support::strings(&["-s", "list_queues"]), "tmp-del\t2\n");
    };
    check(t, &make, &[
        step(&["purge_queue", "tmp-purge"])
            .out("Purging queue 'tmp-purge' in vhost '/' ...\n"),
        wait(&["-s", "list_queues"], "tmp-purge\t0\n"),
        step(&["purge_queue", "tmp-nope"])
            .out("Purging queue 'tmp-nope' in vhost '/' ...\n")
            .err("Error:\nnot_found\n", 69),
        step(&["delete_queue", "tmp-del"])
            .out("Deleting queue 'tmp-del' on vhost '/' ...\nQueue was successfully deleted with 2 ready messages\n"),
        step(&["delete_queue", "tmp-del"])
            .out("Deleting queue 'tmp-del' on vhost '/' ...\n")
            .err("Error:\nQueue not found\n", 64),
        step(&["delete_queue", "-q", "tmp-purge", "--formatter", "json"])
            .out("{\"message\":\"Queue was successfully deleted with 0 ready messages\"}\n"),
    ]);
}

/// close_connection closes the connection of that name with 320 and the reason given.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn close_connection() {
    let (t, _g) = setup();
    let rt = support::runtime();
    let (conn, mut closed) = rt.block_on(async {
        let conn = support::connect(t, "coneyctl-close-me").await;
        let (recorder, rx) = support::recorder();
        conn.register_callback(recorder).await.expect("callback");
        (conn, rx)
    });
    let args = support::strings(&["-s", "list_connections", "name", "client_properties"]);
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
        &[step(&["close_connection", &name, "bye from coneyctl"])
            .out(&format!(
                "Closing connection {name}, reason: bye from coneyctl...\n"
            ))
            .coneyctl_only()],
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
    // The API lists a closed connection until its statistics catch up.
    support::wait_for_line(t, &args, "no coneyctl-close-me connection", |out| {
        !out.contains("coneyctl-close-me")
    });
    check(t, &|| {}, &[step(&["close_connection", &name, "again"])
        .out(&format!("Closing connection {name}, reason: again...\n"))
        .err(&format!("Error:\nno connection named '{name}' (coneyctl takes the name list_connections name shows)\n"), 69)
        .coneyctl_only()]);
}

/// export_definitions writes the API's document as rabbitmqctl writes its own (compact,
/// keys sorted, no final newline), to a file or stdout; import_definitions reads a file or
/// stdin and the entities appear.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn definitions() {
    let (t, _g) = setup();
    let dir = std::env::temp_dir().join(format!("coneyctl-defs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("export.json");
    let f = file.to_str().unwrap().to_string();
    check(
        t,
        &|| {},
        &[step(&["export_definitions", &f])
            .out(&format!(
                "Exporting definitions in JSON to a file at \"{f}\" ...\n"
            ))
            .coneyctl_only()],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON export");
    assert_eq!(
        serde_json::to_string(&doc).unwrap(),
        text,
        "compact, sorted, no newline"
    );
    assert!(doc["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "ctl-q1"));
    assert!(doc["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "ctl-ex"));
    let stdout = support::coneyctl(t, &support::strings(&["export_definitions", "-"]), None);
    assert_eq!((stdout.code, stdout.err.as_str()), (0, ""));
    assert!(stdout.out.starts_with("{\"bindings\":[") && stdout.out.ends_with('}'));

    let import = dir.join("import.json");
    let i = import.to_str().unwrap().to_string();
    let queue = |name: &str| {
        format!(
            r#"{{"queues":[{{"name":"{name}","vhost":"/","durable":true,"auto_delete":false,"arguments":{{}}}}]}}"#
        )
    };
    std::fs::write(&import, queue("tmp-imported")).unwrap();
    let cleanup = || {
        support::delete_queue(t, "tmp-imported");
        support::delete_queue(t, "tmp-stdin");
    };
    check(t, &cleanup, &[
        step(&["import_definitions", &i])
            .out(&format!("Importing definitions in JSON from a file at \"{i}\" ...\n\
                           Successfully started definition import. This process is asynchronous and can take some time.\n")),
        wait(&["-s", "list_queues", "name", "durable"], "tmp-imported\ttrue\n"),
        step(&["-q", "import_definitions", "-"]).stdin(&queue("tmp-stdin")).coneyctl_only(),
        wait(&["-s", "list_queues", "name", "durable"], "tmp-stdin\ttrue\n"),
        step(&["import_definitions", "-"])
            .stdin("{bad")
            .out("Importing definitions in JSON from standard input ...\n")
            .err("Error:\nFailed to deserialise input (format: JSON) (error: key must be a string at line 1 column 2)\n", 65)
            .coneyctl_only(),
    ]);
    cleanup();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// status prints rabbitmqctl's sections from the API, and its JSON form rabbitmqctl's keys.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn status() {
    let (t, _g) = setup();
    let run = support::coneyctl(t, &support::strings(&["status"]), None);
    assert_eq!((run.code, run.err.as_str()), (0, ""), "{}", run.out);
    assert!(run.out.starts_with("Status of node "), "{}", run.out);
    for section in [
        "Runtime\n\n",
        "Alarms\n\n",
        "Memory\n\n",
        "Totals\n\n",
        "Listeners\n\n",
    ] {
        assert!(run.out.contains(section), "no {section:?} in:\n{}", run.out);
    }
    assert!(
        run.out
            .contains(&format!("port: {}, protocol: amqp", t.amqp.1)),
        "{}",
        run.out
    );
    let json = support::coneyctl(
        t,
        &support::strings(&["status", "--formatter", "json"]),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&json.out).expect("status JSON");
    for key in [
        "alarms",
        "listeners",
        "totals",
        "file_descriptors",
        "processes",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    assert!(v["totals"]["queue_count"].as_u64().unwrap() >= 2);
}

/// The URI of the target's own AMQP listener, for a shovel or upstream that loops back.
fn self_uri(t: &Target) -> String {
    format!("amqp://{}:{}", t.amqp.0, t.amqp.1)
}

/// Whether the broker serves the plugin status listing `command` reads (a RabbitMQ node
/// without the shovel or federation plugin does not): if not, the test says so and passes
/// without its steps.
fn plugin_missing(t: &Target, command: &str) -> bool {
    let run = support::coneyctl(t, &support::strings(&["-q", command]), None);
    let missing = run.err.contains("plugin enabled?");
    if missing {
        eprintln!(
            "{command}: skipped, the broker has no such plugin: {}",
            run.err
        );
    }
    missing
}

/// The node name as the plugin status banner shows it (rabbitmqctl's own node name when its
/// steps run, which then must agree).
fn node_name(t: &Target) -> String {
    let run = support::coneyctl(t, &support::strings(&["shovel_status"]), None);
    run.out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Shovel status on node "))
        .unwrap_or_else(|| panic!("no banner in:\n{}{}", run.out, run.err))
        .to_string()
}

/// Every `YYYY-MM-DD HH:MM:SS` becomes `T`: when a shovel or link last changed.
fn mask_times(text: &str) -> String {
    let shape = |w: &[u8]| {
        w.len() == 19
            && w.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            })
    };
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if i + 19 <= b.len() && shape(&b[i..i + 19]) {
            out.push('T');
            i += 19;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Replaces the text after each `prefix` up to the next `"` with `X`.
fn mask_after(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let start = at + prefix.len();
        out.push_str(&rest[..start]);
        out.push('X');
        rest = &rest[start..];
        rest = &rest[rest.find('"').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// federation_status output with what differs between brokers and runs made equal: the
/// times, the link's id (a hash that covers the upstream's URI) and its local connection's
/// name (an Erlang pid on RabbitMQ), and the Erlang term's line breaks, which move with the
/// length of that name (erlterm.rs's unit test checks a recorded layout byte for byte).
fn mask_link(text: &str) -> String {
    let mut joined = String::new();
    for line in text.lines() {
        match line.strip_prefix("   ") {
            Some(rest) if joined.ends_with("=>") => {
                joined.push(' ');
                joined.push_str(rest.trim_start());
            }
            Some(rest) => joined.push_str(rest.trim_start()),
            None => {
                if !joined.is_empty() {
                    joined.push('\n');
                }
                joined.push_str(line);
            }
        }
    }
    joined.push('\n');
    let mut s = mask_times(&joined);
    for prefix in [
        "id => <<\"",
        "\"id\":\"",
        "local_connection => <<\"",
        "\"local_connection\":\"",
    ] {
        s = mask_after(&s, prefix);
    }
    s
}

/// Runtime parameters: set (shovel, federation-upstream, federation-upstream-set), list
/// (table, -q, -s, --no-table-headers, JSON, the blank line when there is none), the
/// broker's validation errors (unknown component, bad keys), a vhost that does not exist,
/// clear, and clearing one that does not exist.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn parameters() {
    let (t, _g) = setup();
    if plugin_missing(t, "shovel_status") || plugin_missing(t, "federation_status") {
        return;
    }
    let clean = || {
        support::quietly(
            t,
            &[
                &["clear_parameter", "shovel", "tmp-s1"],
                &["clear_parameter", "federation-upstream-set", "tmp-us1"],
                &["clear_parameter", "federation-upstream", "tmp-u1"],
            ],
        );
        support::delete_queue(t, "tmp-shovel-src");
        support::delete_queue(t, "tmp-shovel-dst");
    };
    let shovel = r#"{"src-uri":"amqp://","src-queue":"tmp-shovel-src","dest-uri":"amqp://","dest-queue":"tmp-shovel-dst"}"#;
    let shovel_sorted = r#"{"dest-queue":"tmp-shovel-dst","dest-uri":"amqp://","src-queue":"tmp-shovel-src","src-uri":"amqp://"}"#;
    let head = "Listing runtime parameters for vhost \"/\" ...\n";
    let rows = format!(
        "shovel\ttmp-s1\t{shovel_sorted}\n\
         federation-upstream\ttmp-u1\t{{\"uri\":\"amqp://\"}}\n\
         federation-upstream-set\ttmp-us1\t[{{\"upstream\":\"tmp-u1\"}}]\n"
    );
    let set = |name: &str, component: &str, value: &str, vhost: &str| {
        format!("Setting runtime parameter \"{name}\" for component \"{component}\" to \"{value}\" in vhost \"{vhost}\" ...\n")
    };
    let clear = |name: &str, component: &str, vhost: &str| {
        format!("Clearing runtime parameter \"{name}\" for component \"{component}\" on vhost \"{vhost}\" ...\n")
    };
    check(t, &clean, &[
        step(&["list_parameters"]).out(&format!("{head}\n")),
        step(&["list_parameters", "--formatter", "json"]).out("[]\n"),
        step(&["set_parameter", "shovel", "tmp-s1", shovel])
            .out(&set("tmp-s1", "shovel", shovel, "/"))
            .always(),
        step(&["set_parameter", "-p", "/", "federation-upstream", "tmp-u1", r#"{"uri":"amqp://"}"#])
            .out(&set("tmp-u1", "federation-upstream", r#"{"uri":"amqp://"}"#, "/")),
        step(&["-q", "set_parameter", "federation-upstream-set", "tmp-us1", r#"[{"upstream":"tmp-u1"}]"#]),
        step(&["list_parameters"])
            .out(&format!("{head}component\tname\tvalue\n{rows}"))
            .rows(2, tmp_row)
            .always(),
        step(&["-q", "list_parameters"])
            .out(&format!("component\tname\tvalue\n{rows}"))
            .rows(1, tmp_row),
        step(&["list_parameters", "-s"]).out(&rows).rows(0, tmp_row),
        step(&["list_parameters", "--no-table-headers"])
            .out(&format!("{head}{rows}"))
            .rows(1, tmp_row),
        step(&["list_parameters", "--formatter", "json"])
            .out(&format!("[\n{{\"component\":\"shovel\",\"name\":\"tmp-s1\",\"value\":{}}}\n\
                           ,{{\"component\":\"federation-upstream\",\"name\":\"tmp-u1\",\"value\":\"{{\\\"uri\\\":\\\"amqp://\\\"}}\"}}\n\
                           ,{{\"component\":\"federation-upstream-set\",\"name\":\"tmp-us1\",\"value\":\"[{{\\\"upstream\\\":\\\"tmp-u1\\\"}}]\"}}\n]\n",
                          serde_json::to_string(shovel_sorted).unwrap()))
            .rows(1, tmp_row),
        step(&["list_parameters", "-p", "tmp-novhost"])
            .out("Listing runtime parameters for vhost \"tmp-novhost\" ...\n")
            .err("Virtual host 'tmp-novhost' does not exist\n", 65),
        step(&["set_parameter", "tmp-bogus", "tmp-s2", "{}"])
            .out(&set("tmp-s2", "tmp-bogus", "{}", "/"))
            .err("Error:\nValidation failed\n\ncomponent tmp-bogus not found\n\n", 69)
            .always(),
        step(&["set_parameter", "shovel", "tmp-s2", r#"{"src-uri":"amqp://"}"#])
            .out(&set("tmp-s2", "shovel", r#"{"src-uri":"amqp://"}"#, "/"))
            .err("Error:\nValidation failed\n\nMust specify 'src-exchange' or 'src-queue'\n\
                  Key \"dest-uri\" not found in tmp-s2\n\n", 69),
        step(&["set_parameter", "federation-upstream", "tmp-u2", r#"{"urix":"amqp://"}"#])
            .out(&set("tmp-u2", "federation-upstream", r#"{"urix":"amqp://"}"#, "/"))
            .err("Error:\nValidation failed\n\nUnrecognised terms [{<<\"urix\">>,<<\"amqp://\">>}] in tmp-u2\n\
                  Key \"uri\" not found in tmp-u2\n\n", 69),
        step(&["set_parameter", "-p", "tmp-novhost", "shovel", "tmp-s2", shovel])
            .out(&set("tmp-s2", "shovel", shovel, "tmp-novhost"))
            .err("Virtual host 'tmp-novhost' does not exist\n", 65),
        step(&["set_parameter", "shovel", "tmp-s2", "notjson"])
            .out(&set("tmp-s2", "shovel", "notjson", "/"))
            .err("Error:\nJSON decoding error. Reason: expected ident at line 1 column 2\n", 69)
            .coneyctl_only(),
        step(&["clear_parameter", "shovel", "tmp-s1"]).out(&clear("tmp-s1", "shovel", "/")).always(),
        step(&["clear_parameter", "shovel", "tmp-s1"])
            .out(&clear("tmp-s1", "shovel", "/"))
            .err("Error:\nParameter does not exist\n", 69)
            .always(),
        step(&["clear_parameter", "tmp-bogus", "tmp-s1"])
            .out(&clear("tmp-s1", "tmp-bogus", "/"))
            .err("Error:\nParameter does not exist\n", 69),
        step(&["clear_parameter", "-p", "tmp-novhost", "shovel", "tmp-s1"])
            .out(&clear("tmp-s1", "shovel", "tmp-novhost"))
            .err("Error:\nParameter does not exist\n", 69),
        step(&["clear_parameter", "federation-upstream-set", "tmp-us1", "--formatter", "json"])
            .out("{\"node\":\"NODE\",\"result\":\"ok\"}\n")
            .mask(|s| {
                let mut out = s.to_string();
                if let Some(start) = out.find("\"node\":\"") {
                    let from = start + 8;
                    if let Some(len) = out[from..].find('"') {
                        out.replace_range(from..from + len, "NODE");
                    }
                }
                out
            }),
        step(&["-q", "clear_parameter", "federation-upstream", "tmp-u1"]),
        step(&["list_parameters"]).out(&format!("{head}\n")),
    ]);
}

/// shovel_status: a running shovel in rabbitmqctl's columns (its header the first shovel's
/// keys), -q, -s, JSON, -p accepted and ignored as rabbitmqctl does; nothing but the banner
/// when there is no shovel.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn shovel_status() {
    let (t, _g) = setup();
    if plugin_missing(t, "shovel_status") {
        return;
    }
    let node = node_name(t);
    let clean = || {
        support::quietly(t, &[&["clear_parameter", "shovel", "tmp-s1"]]);
        support::wait_for_line(
            t,
            &support::strings(&["-s", "shovel_status"]),
            "no tmp-s1",
            |out| !out.contains("tmp-s1"),
        );
        support::delete_queue(t, "tmp-shovel-src");
        support::delete_queue(t, "tmp-shovel-dst");
    };
    let value = format!(
        r#"{{"src-uri":"{0}","src-queue":"tmp-shovel-src","dest-uri":"{0}","dest-exchange":"amq.topic","dest-exchange-key":"tmp.key"}}"#,
        self_uri(t)
    );
    let banner = format!("Shovel status on node {node}\n");
    let header =
        "destination\tdestination_exchange\tdestination_exchange_key\tdestination_protocol\t\
                  last_changed\tname\tsource\tsource_protocol\tsource_queue\tstate\t\
                  termination_reason\ttype\tvhost\n";
    let row = format!(
        "{0}\tamq.topic\ttmp.key\tamqp091\tT\ttmp-s1\t{0}\tamqp091\ttmp-shovel-src\trunning\t\tdynamic\t/\n",
        self_uri(t)
    );
    check(
        t,
        &clean,
        &[
            step(&["shovel_status"]).out(&banner),
            step(&["-q", "set_parameter", "shovel", "tmp-s1", &value]),
            wait(&["-s", "shovel_status"], "running"),
            step(&["shovel_status"])
                .out(&format!("{banner}{header}{row}"))
                .mask(mask_times)
                .always(),
            step(&["shovel_status", "-q"])
                .out(&format!("{header}{row}"))
                .mask(mask_times),
            step(&["shovel_status", "-s", "-p", "tmp-novhost"])
                .out(&row)
                .mask(mask_times),
            step(&["shovel_status", "--formatter", "json"])
                .out(&format!(
                    "[\n{{\"destination\":\"{0}\",\"destination_exchange\":\"amq.topic\",\
                 \"destination_exchange_key\":\"tmp.key\",\"destination_protocol\":\"amqp091\",\
                 \"last_changed\":\"T\",\"name\":\"tmp-s1\",\"source\":\"{0}\",\
                 \"source_protocol\":\"amqp091\",\"source_queue\":\"tmp-shovel-src\",\
                 \"state\":\"running\",\"termination_reason\":\"\",\"type\":\"dynamic\",\
                 \"vhost\":\"/\"}}\n]\n",
                    self_uri(t)
                ))
                .mask(mask_times),
            step(&["-q", "clear_parameter", "shovel", "tmp-s1"]),
        ],
    );
    clean();
}

/// federation_status: rabbitmqctl's banner and Erlang term for a running exchange link
/// (see mask_link for what is made equal), --only-down, JSON, and `[]` with no link.
#[test]
#[ignore = "needs a management API: RabbitMQ's (scripts/test.sh --against-rabbitmq) or CONEYCTL_TEST_API"]
fn federation_status() {
    let (t, _g) = setup();
    if plugin_missing(t, "federation_status") {
        return;
    }
    let node = node_name(t);
    // Not named tmp-/ctl-: the link's upstream queue on this same broker must not show in
    // other tests' filtered listings.
    let clean = || {
        support::quietly(
            t,
            &[
                &["clear_policy", "xfed-p"],
                &["clear_parameter", "federation-upstream", "xfed-u"],
            ],
        );
        support::wait_for_line(
            t,
            &support::strings(&["-s", "federation_status"]),
            "no link",
            |out| !out.contains("xfed-ex"),
        );
        support::exchange(t, "xfed-ex", "topic", false);
        let queues = support::coneyctl(t, &support::strings(&["-s", "list_queues", "name"]), None);
        for q in queues
            .out
            .lines()
            .filter(|q| q.starts_with("federation: xfed-ex"))
        {
            support::delete_queue(t, q);
        }
    };
    let setup_link = || {
        clean();
        support::exchange(t, "xfed-ex", "topic", true);
    };
    let upstream = format!(r#"{{"uri":"{}"}}"#, self_uri(t));
    let link = format!(
        "[#{{error => <<>>,exchange => <<\"xfed-ex\">>,id => <<\"X\">>,last_changed => <<\"T\">>,\
         local_connection => <<\"X\">>,queue => <<>>,status => running,type => exchange,\
         upstream => <<\"xfed-u\">>,upstream_exchange => <<\"xfed-ex\">>,upstream_queue => <<>>,\
         uri => <<\"{}\">>,vhost => <<\"/\">>}}]\n",
        self_uri(t)
    );
    check(t, &setup_link, &[
        step(&["federation_status"])
            .out(&format!("Listing federation links on node {node}...\n[]\n"))
            .always(),
        step(&["federation_status", "--formatter", "json"]).out("[\n]\n"),
        step(&["-q", "set_parameter", "federation-upstream", "xfed-u", &upstream]),
        step(&["-q", "set_policy", "--apply-to", "exchanges", "xfed-p", "^xfed-ex$", r#"{"federation-upstream":"xfed-u"}"#]),
        wait(&["-q", "federation_status"], "status => running"),
        step(&["federation_status"])
            .out(&format!("Listing federation links on node {node}...\n{link}"))
            .mask(mask_link)
            .always(),
        step(&["federation_status", "-s", "-p", "tmp-novhost"]).out(&link).mask(mask_link),
        step(&["federation_status", "--only-down"])
            .out(&format!("Listing federation links which are down on node {node}...\n[]\n")),
        step(&["federation_status", "--formatter", "json"])
            .out(&format!(
                "[\n{{\"error\":\"\",\"exchange\":\"xfed-ex\",\"id\":\"X\",\"last_changed\":\"T\",\
                 \"local_connection\":\"X\",\"queue\":\"\",\"status\":\"running\",\"type\":\"exchange\",\
                 \"upstream\":\"xfed-u\",\"upstream_exchange\":\"xfed-ex\",\"upstream_queue\":\"\",\
                 \"uri\":\"{}\",\"vhost\":\"/\"}}\n]\n",
                self_uri(t)
            ))
            .mask(mask_link),
        step(&["-q", "clear_policy", "xfed-p"]),
        wait(&["-q", "federation_status"], "[]\n"),
        step(&["-q", "clear_parameter", "federation-upstream", "xfed-u"]),
    ]);
    clean();
}
