//! coneyctl, the operator's command-line tool, tested from outside: its binary run as a
//! process against a management API, in three groups.
//!
//! * `fake_api`: a fake API on a loopback socket; always run (`cargo test --release`).
//! * `live`: a broker's management API, each step's output what rabbitmqctl 3.10 prints;
//!   ignored by default (`scripts/test.sh --against-rabbitmq` runs it against its RabbitMQ
//!   node), run by hand as shown below.
//! * `coney`: coney's own API, found through coney's config file; ignored until coney serves
//!   the management API (issue 13: management listener), run with `-- --ignored coney::`.
//!
//! ```text
//! cargo test --release --test coneyctl -- --ignored live::     (a private RabbitMQ node)
//! CONEYCTL_TEST_RABBITMQ_DIR=/tmp/rmq-ctl CONEYCTL_TEST_RABBITMQCTL=all \
//!     cargo test --release --test coneyctl -- --ignored live:: (every step via rabbitmqctl too)
//! CONEYCTL_TEST_API=127.0.0.1:15672 CONEYCTL_TEST_AMQP=127.0.0.1:5672 \
//!     cargo test --release --test coneyctl -- --ignored live:: (any broker)
//! ```

mod coney;
mod fake_api;
mod live;
mod support;
