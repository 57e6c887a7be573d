//! Every hard bound of the broker as a named constant, units last, with the relations between
//! them checked at compile time. Runtime-tunable values live in `config.rs` and are validated
//! against these.

use crate::protocol::constants::{FRAME_MIN_SIZE, FRAME_OVERHEAD};

/// Largest frame we accept or send, header and end octet included; offered in connection.tune.
pub(crate) const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// Channels per connection offered in connection.tune (RabbitMQ's default).
pub(crate) const CHANNEL_MAX: u16 = 2047;
/// Heartbeat interval offered in connection.tune (RabbitMQ's default).
pub(crate) const HEARTBEAT_SECS: u16 = 60;
/// Nesting of tables and arrays inside one field table; deeper input is malformed.
pub const TABLE_DEPTH_MAX: usize = 16;
/// Largest message body accepted (RabbitMQ's max_message_size default, 128 MiB).
pub(crate) const MESSAGE_SIZE_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// A socket that has not finished connection.open by then is closed (RabbitMQ: 10 s).
pub(crate) const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// After we send connection.close, how long we wait for close-ok before dropping the socket.
pub(crate) const CLOSE_TIMEOUT_SECS: u64 = 3;
/// Bytes read from one connection per loop turn, so one busy peer cannot starve the others.
pub(crate) const READ_BYTES_PER_TURN_MAX: usize = 64 * 1024;
/// Bytes read straight into message bodies from one connection per loop turn, on top of
/// READ_BYTES_PER_TURN_MAX: they cost only the kernel's copy (no parsing, no routing), about
/// 50 µs for 256 KiB here, and a 16 MiB body then takes 64 reads and turns instead of 256
/// (10% less broker CPU per message, measured with coney-perf -s 16777216).
pub(crate) const READ_BODY_BYTES_PER_TURN_MAX: usize = 256 * 1024;
/// Time spent on one connection's input per loop turn: past it, the frames it sent wait for
/// the next turn (after every other ready connection's). Bytes alone do not bound a turn: 64
/// KiB of publishes routed through thousands of wildcard or headers bindings, or of
/// consume/cancel pairs, took 5 to 250 ms; with this bound a client delays the others by at
/// most this much, plus its one command in progress, per turn. Proven by tests/hostile (the
/// canary's p99 round trip stays under 10 ms under every load).
pub(crate) const READ_TIME_PER_TURN_MAX_MICROS: u64 = 1_000;
/// Time spent reading all connections per loop turn (checked between connections): 1,000
/// connections each sending a byte cost a read syscall each, 25 ms in one turn on a busy
/// machine (tests/hostile, slowloris). Those not reached are read first next turn.
pub(crate) const READ_TIME_ALL_PER_TURN_MAX_MICROS: u64 = 2_000;
/// Cheap frames (default-exchange publishes, single acks) handled between two checks of
/// READ_TIME_PER_TURN_MAX_MICROS: a clock read after each would cost as much as the frame,
/// none at all let 64 KiB of publishes into one queue take 6 to 11 ms on a busy machine
/// (page faults as the queue grows; tests/hostile, messages). 64 frames are some tens of µs.
pub(crate) const INPUT_CHEAP_FRAMES_PER_CLOCK_READ: usize = 64;
/// Size of each read syscall into the shared read buffer.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Deliveries stop while a connection's unsent output is above this, and the messages wait
/// in their queues instead of in memory per socket.
pub(crate) const WRITE_BUFFER_HIGH_BYTES: usize = 1024 * 1024;
/// Deliveries resume once unsent output falls below this (hysteresis against flapping).
pub(crate) const WRITE_BUFFER_LOW_BYTES: usize = 256 * 1024;
/// Body frames at least this large are taken into their message as their payload arrives,
/// instead of waiting whole in the connection's partial-frame buffer (copied there and back
/// at every read): a large body is copied once, from the read buffer into the message.
pub(crate) const BODY_STREAM_MIN_BYTES: usize = 4096;
/// While a large body frame is part-way, its payload is read straight into its message and
/// at most this much of what follows into the read buffer, in the same readv: enough for the
/// end octet, the next publish's method and header frames and the next body frame's header,
/// and a small copy of the next body's first octets.
pub(crate) const BODY_TAIL_READ_BYTES: usize = 4096;
/// Largest partial-frame buffer kept allocated for an idle connection.
pub(crate) const READ_LEFTOVER_KEEP_BYTES: usize = 4 * 1024;
/// Most of a message body reserved when its content header arrives; the rest grows with the
/// body frames, so a header announcing a huge body costs nothing until the body comes.
pub(crate) const BODY_PREALLOCATE_MAX_BYTES: usize = 1024 * 1024;
/// A connection whose unsent output reaches this (a peer that never reads) is closed. One
/// delivery may cross the high-water mark by a whole message, hence the message size term.
pub(crate) const WRITE_BUFFER_HARD_BYTES: usize =
    64 * 1024 * 1024 + MESSAGE_SIZE_MAX_BYTES as usize;
/// Bodies at least this large are written from the message's shared buffer (writev) instead
/// of being copied into the output buffer; below it a copy is cheaper than another piece.
pub(crate) const OUTBOX_BODY_BY_REFERENCE_MIN_BYTES: usize = 8 * 1024;
/// Pieces handed to one vectored write: two per referenced body frame, so with 128 KiB
/// frames one writev offers up to 4 MiB, more than a socket buffer takes. Linux's IOV_MAX is
/// 1024.
pub(crate) const OUTBOX_IOV_MAX: usize = 64;
/// Largest unsent-output buffer kept allocated while a connection is idle.
pub(crate) const WRITE_BUFFER_KEEP_BYTES: usize = 64 * 1024;
/// Encrypted output rustls may hold for one TLS connection. Output beyond it waits in the
/// connection's outbox, where the write high-water marks see it; so TLS adds at most this
/// much per connection to what a plain connection buffers.
pub(crate) const TLS_OUTPUT_STAGED_MAX_BYTES: usize = 64 * 1024;
/// Ciphertext read per loop turn from a TLS connection that has not finished its handshake
/// (a handshake needs a few KiB; a slow or hostile one gets a slice, not a whole read budget).
pub(crate) const TLS_HANDSHAKE_BYTES_PER_TURN_MAX: usize = 16 * 1024 + 512;
/// Messages delivered to one channel and not yet acked, even with prefetch_count 0.
pub(crate) const UNACKED_PER_CHANNEL_MAX: usize = 1 << 20;
/// A durable queue keeps at most this many ready messages in memory; beyond it, messages
/// stay in the store and only a small index entry per message stays in memory.
pub(crate) const QUEUE_WINDOW_MESSAGES_MAX: usize = 8192;
/// ... or at most this many bytes of them.
pub(crate) const QUEUE_WINDOW_BYTES_MAX: usize = 8 * 1024 * 1024;
/// A segment of the message log is closed and the next one started once it reaches this.
pub(crate) const SEGMENT_SIZE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of the message log compaction reads and copies in one loop turn (a larger record is
/// copied in pieces of this size over several turns).
pub(crate) const COMPACTION_BYTES_PER_TURN: usize = 1024 * 1024;
/// Segments one compaction pass copies into one new file.
pub(crate) const COMPACTION_SOURCES_MAX: usize = 16;
/// Bytes of definition records read per loop turn while a new snapshot is built.
pub(crate) const DEFINITIONS_SNAPSHOT_BYTES_PER_TURN: usize = 256 * 1024;
/// The definitions journal is folded into a new snapshot once it is larger than the current
/// snapshot and than this, so a snapshot's cost is spread over at least as many changes.
pub(crate) const DEFINITIONS_JOURNAL_MIN_BYTES: u64 = 1024 * 1024;
/// A queue's messages in memory are kept in chunks of this many (queue/chunked.rs), so no
/// push, pop or requeue moves more than one chunk (20 KiB), where a doubling queue copied all
/// it held. Small, because the queues one publish reaches grow together: 300 queues doubling
/// their first chunk from 512 to 1,024 copied 12 MiB in one publish.
pub(crate) const QUEUE_CHUNK_MESSAGES: usize = 256;
/// Messages read back from the store at once when a queue's window runs dry.
pub(crate) const PAGE_IN_BATCH_MESSAGES: usize = 1024;
/// Deliveries made from one queue in one pass before other queues get a turn: about a
/// millisecond of small messages (16,384 were 3 to 4 ms, a stall for every other client when
/// 60,000 messages went to one consumer; tests/hostile, messages).
pub(crate) const DELIVERIES_PER_QUEUE_PER_TURN_MAX: usize = 4096;
/// Time spent delivering from all queues per loop turn (checked between queues and every
/// DELIVERIES_PER_CLOCK_READ deliveries): a thousand queues with a consumer each would
/// otherwise get up to DELIVERIES_PER_QUEUE_PER_TURN_MAX each in one turn.
pub(crate) const DELIVERY_TIME_PER_TURN_MAX_MICROS: u64 = 1_000;
/// Deliveries from one queue between two clock reads: some hundreds of µs at most.
pub(crate) const DELIVERIES_PER_CLOCK_READ: usize = 256;
/// Cleanup after deletions (broker/cleanup.rs) is counted in units of about a microsecond: a
/// binding or a queue removed is one, and so are this many messages dropped.
pub(crate) const CLEANUP_MESSAGES_PER_UNIT: usize = 32;
/// ... and this many delivered messages requeued (a closed channel's unacked).
pub(crate) const CLEANUP_REQUEUES_PER_UNIT: usize = 4;
/// Cleanup a deleting command does before it is answered: a queue with a few hundred bindings
/// or some thousands of messages, a connection with a few hundred exclusive queues, is gone
/// whole by delete-ok or close-ok. Proven with the next by tests/hostile (30,000 bindings on
/// one queue, 10,000 exclusive queues, queues of 500,000 messages purged and deleted).
pub(crate) const CLEANUP_WORK_INLINE_MAX: usize = 512;
/// Deferred cleanup done per loop turn.
pub(crate) const CLEANUP_WORK_PER_TURN_MAX: usize = 1024;
/// ... and at most this long per loop turn: a unit is about a microsecond on an idle machine
/// and several on a busy one.
pub(crate) const CLEANUP_TIME_PER_TURN_MAX_MICROS: u64 = 500;
/// Cleanup units done between two clock reads.
pub(crate) const CLEANUP_UNITS_PER_CLOCK_READ: usize = 64;
/// Connections whose socket goes (deregistered, closed, logged) per loop turn; the rest wait
/// for the next turns. Each costs some syscalls and a log line, 10 to 20 µs: 2,000 clients
/// closing at once, or 2,000 idle ones reaching the handshake deadline together, stalled every
/// other client for 20 to 40 ms in one turn (tests/hostile: connection flood).
pub(crate) const CONNECTIONS_CLOSED_PER_TURN_MAX: usize = 128;
/// Publisher flow: what one ready message costs a queue in memory beyond its exchange,
/// routing key, properties and body (its slot in the queue, the shared buffer's header, the
/// allocator's rounding), for the estimate the flow marks compare against. Measured: about
/// 170 bytes for a 16-byte message in a queue of 100,000.
pub(crate) const QUEUED_MESSAGE_OVERHEAD_BYTES: usize = 160;
/// A queue with consumers whose ready messages cost this much memory paces its publishers:
/// a connection that routes a message into it is not read until the queue drains under
/// `QUEUE_FLOW_LOW_BYTES` or `FLOW_PAUSE_MAX_MS` has passed.
pub(crate) const QUEUE_FLOW_HIGH_BYTES: usize = 16 * 1024 * 1024;
/// Paused publishers resume once their queue is under this (hysteresis: a pause lasts while
/// the consumers take half the high mark, not one message).
pub(crate) const QUEUE_FLOW_LOW_BYTES: usize = 8 * 1024 * 1024;
/// Longest a publisher stays paused by one queue: then it is read for a turn even if the
/// queue has not drained. So a consumer that stopped, or a cycle of connections consuming
/// each other's queues with manual acks, slows publishers to a crawl (one read chunk per
/// pause) instead of stopping them for ever; the memory alarm remains the last resort.
pub(crate) const FLOW_PAUSE_MAX_MS: u64 = 1000;
/// A connection reads as in "flow" this long after its last pause ended (RabbitMQ's
/// credit_flow reports a connection blocked within the last second as flow, so the state
/// does not flicker).
pub(crate) const FLOW_STATE_LINGER_MS: u64 = 1000;
/// Loop turns that may start without asking the poller for new events while work is left
/// from the last turn (input past its budget, queues that can deliver); then one poll that
/// does not sleep, so new connections and acks are never kept waiting longer than this many
/// bounded turns.
pub(crate) const BUSY_TURNS_WITHOUT_POLL_MAX: u32 = 3;
/// ... but only after a turn shorter than this: after a longer one the poll (a few µs) is
/// cheap by comparison, and skipping it made a client that had just sent a message wait for
/// up to three more bounded turns of a busy broker (the hostile suite's canary: p50 5 ms).
pub(crate) const POLL_SKIP_AFTER_TURN_MAX_MICROS: u64 = 200;
/// Timed work one loop turn does at most: messages expired (x-message-ttl, expiration),
/// queues deleted by x-expires, delayed messages released, dead letters republished. The rest
/// is done in the next turns (the loop does not sleep while work is left), so a million
/// messages expiring at once cannot stall other clients.
pub(crate) const EXPIRY_WORK_PER_TURN_MAX: usize = 512;
/// Dead letters waiting for a turn's budget; past this (a cascade of dead-lettering queues),
/// new dead letters are dropped and the drop is logged.
pub(crate) const DEAD_LETTERS_PENDING_MAX: usize = 1 << 20;

// Per-client state of RabbitMQ's consumer extensions (issue 10) needs no bound of its own; it
// is bounded by what already is. A queue's consumer priority levels are at most its consumers
// (one group per level; picking walks levels and consumers as round robin walked consumers).
// A channel has at most one reply consumer (RabbitMQ's rule), so a connection has at most
// CHANNEL_MAX: a registry entry of about 40 bytes and a 54-byte reply name each. A direct reply
// is written once per published message, past prefetch as in RabbitMQ, so the requester's
// output is bounded by WRITE_BUFFER_HARD_BYTES like any output.

/// Events taken from the poller per wake-up.
pub(crate) const EVENTS_PER_POLL_MAX: usize = 1024;
/// Connections accepted at once; past this, new sockets are accepted and closed at once.
pub(crate) const CONNECTIONS_MAX: usize = 65_536;

const _: () = assert!(FRAME_MAX_BYTES >= FRAME_MIN_SIZE);
const _: () = assert!(READ_BYTES_PER_TURN_MAX >= READ_CHUNK_BYTES);
const _: () = assert!(READ_TIME_ALL_PER_TURN_MAX_MICROS >= READ_TIME_PER_TURN_MAX_MICROS);
const _: () = assert!(POLL_SKIP_AFTER_TURN_MAX_MICROS < READ_TIME_PER_TURN_MAX_MICROS);
// At least a whole message (a method and a header frame) between two clock reads.
const _: () = assert!(INPUT_CHEAP_FRAMES_PER_CLOCK_READ >= 2);
const _: () = assert!(WRITE_BUFFER_HARD_BYTES > WRITE_BUFFER_HIGH_BYTES + FRAME_MAX_BYTES as usize);
const _: () = assert!(WRITE_BUFFER_LOW_BYTES < WRITE_BUFFER_HIGH_BYTES);
// TLS staging is small next to the marks, and cannot push a reading peer over the hard bound.
const _: () = assert!(TLS_OUTPUT_STAGED_MAX_BYTES <= WRITE_BUFFER_LOW_BYTES);
const _: () = assert!(
    WRITE_BUFFER_HARD_BYTES
        > WRITE_BUFFER_HIGH_BYTES + FRAME_MAX_BYTES as usize + TLS_OUTPUT_STAGED_MAX_BYTES
);
// A handshake slice holds at least one whole TLS record (16 KiB plaintext + overhead), so a
// handshake always progresses, and never more than a plain connection may read per turn.
const _: () = assert!(TLS_HANDSHAKE_BYTES_PER_TURN_MAX >= 16 * 1024 + 256);
const _: () = assert!(TLS_HANDSHAKE_BYTES_PER_TURN_MAX <= READ_BYTES_PER_TURN_MAX);
const _: () = assert!(FRAME_OVERHEAD < FRAME_MIN_SIZE as usize);
const _: () = assert!(CLEANUP_WORK_INLINE_MAX <= CLEANUP_WORK_PER_TURN_MAX);
const _: () = assert!(DELIVERIES_PER_CLOCK_READ <= DELIVERIES_PER_QUEUE_PER_TURN_MAX);
// A full chunk splits in two non-empty halves.
const _: () = assert!(QUEUE_CHUNK_MESSAGES >= 2);
const _: () = assert!(CLEANUP_UNITS_PER_CLOCK_READ <= CLEANUP_WORK_INLINE_MAX);
const _: () = assert!(BODY_STREAM_MIN_BYTES <= FRAME_MIN_SIZE as usize);
const _: () = assert!(OUTBOX_IOV_MAX >= 3 && OUTBOX_IOV_MAX <= 1024);
const _: () = assert!(QUEUE_FLOW_LOW_BYTES < QUEUE_FLOW_HIGH_BYTES);
// A durable queue's in-memory window alone never paces its publishers: only a backlog beyond
// it (a 32-byte location per message) can.
const _: () = assert!(
    QUEUE_WINDOW_BYTES_MAX + QUEUE_WINDOW_MESSAGES_MAX * QUEUED_MESSAGE_OVERHEAD_BYTES
        < QUEUE_FLOW_HIGH_BYTES
);
// One turn's input from a resumed publisher (a message costs a queue at most about 4 times its
// wire size, for empty bodies) cannot carry a queue from the low mark past the high one, so a
// resume is not followed at once by another pause.
const _: () = assert!(QUEUE_FLOW_HIGH_BYTES - QUEUE_FLOW_LOW_BYTES > 4 * READ_BYTES_PER_TURN_MAX);
const _: () = assert!(FLOW_PAUSE_MAX_MS >= 100 && FLOW_PAUSE_MAX_MS < HEARTBEAT_SECS as u64 * 1000);
const _: () = assert!(OUTBOX_BODY_BY_REFERENCE_MIN_BYTES >= FRAME_OVERHEAD);
const _: () =
    assert!(EXPIRY_WORK_PER_TURN_MAX > 0 && EXPIRY_WORK_PER_TURN_MAX <= DEAD_LETTERS_PENDING_MAX);
// Compaction parses a large record's fixed fields (up to 65,535 queue ids) from one turn's read.
const _: () = assert!(COMPACTION_BYTES_PER_TURN >= 64 + 4 * u16::MAX as usize);
const _: () = assert!((COMPACTION_BYTES_PER_TURN as u64) < SEGMENT_SIZE_MAX_BYTES);
// Offsets within a segment are u32; one record may exceed the segment size by a message.
const _: () = assert!(SEGMENT_SIZE_MAX_BYTES + 2 * MESSAGE_SIZE_MAX_BYTES < u32::MAX as u64);
const _: () = assert!(DEFINITIONS_SNAPSHOT_BYTES_PER_TURN as u64 <= DEFINITIONS_JOURNAL_MIN_BYTES);
// A partial frame kept between reads is shorter than frame_max + FRAME_OVERHEAD (a payload of
// frame_max is accepted, as RabbitMQ does); the read buffer (FRAME_MAX_BYTES +
// READ_CHUNK_BYTES) must leave room to read more after it.
const _: () = assert!(READ_CHUNK_BYTES > FRAME_OVERHEAD);
// The tail read after a body's payload holds at least a frame's header and end octet.
const _: () =
    assert!(BODY_TAIL_READ_BYTES > FRAME_OVERHEAD && BODY_TAIL_READ_BYTES <= READ_CHUNK_BYTES);

// HTTP (management and Prometheus listeners). The first six are cowboy's defaults as RabbitMQ's
// management plugin keeps them, checked against RabbitMQ 3.10 (tests/fixtures/rabbitmq-3.10-http).

/// Longest request line (method, target, version); longer gets 414.
pub const HTTP_REQUEST_LINE_MAX_BYTES: usize = 8000;
/// Longest header value; longer gets 431.
pub const HTTP_HEADER_VALUE_MAX_BYTES: usize = 4096;
/// Headers in one request; more gets 431.
pub const HTTP_HEADERS_MAX: usize = 100;
/// A request head must be complete this long after the connection opened or the previous
/// response was produced, or the connection closes (408 if part of a head came): slowloris.
pub const HTTP_REQUEST_TIMEOUT_SECS: u64 = 5;
/// A body that stops arriving, or output the peer stops reading, for this long closes the
/// connection.
pub const HTTP_IDLE_TIMEOUT_SECS: u64 = 60;
/// Requests served on one connection; the last response says `connection: close`.
pub const HTTP_REQUESTS_PER_CONNECTION_MAX: u32 = 1000;
/// A whole request head; a partial head is held in memory up to this, then 431.
pub const HTTP_HEAD_MAX_BYTES: usize = 64 * 1024;
/// Largest request body (RabbitMQ's `management.http_max_body_size` default, sized for a
/// definitions import); a larger Content-Length gets 413 before any of the body is read.
/// (RabbitMQ 3.10 itself answers 500 to bodies past about 8,000,000 bytes, cowboy's read
/// chunk; coney takes the documented bound and answers 413.)
pub const HTTP_BODY_MAX_BYTES: usize = 20_000_000;
/// Longest chunk-size line (hex size and extensions) in a chunked request body.
pub const HTTP_CHUNK_LINE_MAX_BYTES: usize = 1024;
/// Pipelined requests taken from one connection per loop turn; the rest wait in its buffer.
pub const HTTP_REQUESTS_PER_TURN_MAX: usize = 16;
/// A streamed response body is produced only while the connection's unsent output is below
/// this, and no further request is taken (AMQP's delivery high-water mark, for HTTP).
pub const HTTP_WRITE_BUFFER_HIGH_BYTES: usize = 256 * 1024;
/// Body bytes one streamed response produces per loop turn, so a listing of 10,000 queues
/// is paced across turns instead of stalling every other client.
pub const HTTP_BODY_SLICE_BYTES: usize = 64 * 1024;
/// Characters of a `use_regex` name filter, and the compiled size regex-lite may use for it.
pub const HTTP_NAME_REGEX_MAX_BYTES: usize = 1024;
pub const HTTP_NAME_REGEX_COMPILED_MAX_BYTES: usize = 1024 * 1024;
/// Open HTTP connections (management and Prometheus together); more are closed at accept.
/// With HTTP_BODY_MAX_BYTES this bounds request bodies held in memory at once.
pub const HTTP_CONNECTIONS_MAX: usize = 64;
/// Bytes read from one HTTP connection per loop turn (AMQP's READ_BYTES_PER_TURN_MAX).
pub const HTTP_READ_BYTES_PER_TURN_MAX: usize = 64 * 1024;
/// Messages one POST /api/queues/../get takes (RabbitMQ takes any `count`; each is a body
/// copied into the answer, so coney bounds it).
pub const HTTP_GET_MESSAGES_MAX: u64 = 1000;
/// HTTP connections served per loop turn; the others keep their place for the next turn, so
/// many API clients at once add at most this many passes between two AMQP turns.
pub const HTTP_SOCKETS_PER_TURN_MAX: usize = 4;

const _: () =
    assert!(HTTP_HEAD_MAX_BYTES >= HTTP_REQUEST_LINE_MAX_BYTES + HTTP_HEADER_VALUE_MAX_BYTES);
const _: () = assert!(HTTP_BODY_SLICE_BYTES <= HTTP_WRITE_BUFFER_HIGH_BYTES);
const _: () = assert!(HTTP_WRITE_BUFFER_HIGH_BYTES < WRITE_BUFFER_HARD_BYTES);
const _: () = assert!(HTTP_REQUEST_TIMEOUT_SECS < HTTP_IDLE_TIMEOUT_SECS);
const _: () = assert!(HTTP_REQUESTS_PER_TURN_MAX as u32 <= HTTP_REQUESTS_PER_CONNECTION_MAX);
const _: () = assert!(HTTP_READ_BYTES_PER_TURN_MAX >= READ_CHUNK_BYTES);
const _: () =
    assert!(HTTP_SOCKETS_PER_TURN_MAX >= 1 && HTTP_SOCKETS_PER_TURN_MAX <= HTTP_CONNECTIONS_MAX);
/// How often each queue's and exchange's counters are sampled for their rates (RabbitMQ's
/// default collect_statistics_interval is 5 s); each sample is a copy per object.
pub const RATE_SAMPLE_MS: u64 = 5_000;
/// Queues and exchanges brought in line with changed policies per loop turn (`policies.rs`):
/// each costs a regex match per policy of its vhost and a parse of its arguments (about 2 µs),
/// so a policy over 10,000 queues is applied over 20 turns of at most ~1 ms each.
pub const POLICY_OBJECTS_PER_TURN_MAX: usize = 500;
/// Heads dropped (or dead-lettered) per turn, over all queues, when policies lower length
/// limits below what queues hold: a backlog of millions is cut over many turns, not in one.
pub const POLICY_TRIM_PER_TURN_MAX: usize = 512;
const _: () = assert!(POLICY_OBJECTS_PER_TURN_MAX > 0 && POLICY_TRIM_PER_TURN_MAX > 0);
/// Longest permission or topic-permission pattern, counted after {username}/{vhost}
/// expansion. RabbitMQ has no bound; 16 KiB holds an alternation of ~1,000 queue names.
pub const PERMISSION_PATTERN_MAX_BYTES: usize = 16 * 1024;
/// Compiled size of one permission regex (the regex crate's `size_limit`): a 13-byte pattern
/// such as "(a{1000}){1000}" would otherwise compile to a program of millions of states.
pub const PERMISSION_REGEX_COMPILED_MAX_BYTES: usize = 1024 * 1024;
/// Lazy-DFA cache of one permission regex; past it the crate falls back to its other linear
/// engines, so this bounds memory, never correctness.
pub const PERMISSION_REGEX_DFA_CACHE_MAX_BYTES: usize = 256 * 1024;
/// Nesting of groups and repetitions in one permission pattern (the parser recurses on it).
pub const PERMISSION_REGEX_NEST_MAX: u32 = 64;
/// Largest definitions file read or accepted for import. In RabbitMQ 3.10's export a queue,
/// exchange or binding takes 100 to 400 bytes, so this holds a few hundred thousand entities.
pub const DEFINITIONS_FILE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Nesting of arrays and objects in a definitions file: serde_json's fixed recursion limit
/// (its `unbounded_depth` feature is not enabled), so parsing never recurses deeper.
pub const DEFINITIONS_JSON_DEPTH_MAX: usize = 128;

const _: () = assert!(PERMISSION_PATTERN_MAX_BYTES <= PERMISSION_REGEX_COMPILED_MAX_BYTES);
const _: () = assert!(DEFINITIONS_JSON_DEPTH_MAX > TABLE_DEPTH_MAX);

// Outbound AMQP connections (src/client, src/shovel, src/reactor/shovel.rs).

/// Largest frame the client side asks for in tune-ok (the server's lower value wins).
pub(crate) const CLIENT_FRAME_MAX_BYTES: u32 = FRAME_MAX_BYTES;
/// Heartbeat the client side asks for (the Erlang client's default, so a remote that goes
/// away without closing is noticed within two intervals); a URI's `heartbeat` overrides it.
pub(crate) const CLIENT_HEARTBEAT_SECS: u16 = 10;
/// A connect, handshake and topology setup that has not finished by then is a failure, and
/// the shovel waits its reconnect-delay before the next attempt.
pub(crate) const CLIENT_SETUP_TIMEOUT_SECS: u64 = 10;
/// Messages one shovel moves per loop turn (deliveries taken from its source's input); the
/// rest wait in its input buffer, and the socket is not read, until the next turn.
pub const SHOVEL_MESSAGES_PER_TURN_MAX: usize = 256;
/// Bytes read from one shovel socket per loop turn.
pub(crate) const SHOVEL_READ_BYTES_PER_TURN_MAX: usize = 64 * 1024;
/// A shovel stops taking deliveries from its source while its destination connection has
/// this much unsent output (the destination or the network is slower than the source).
pub(crate) const SHOVEL_OUTPUT_HIGH_BYTES: usize = 1024 * 1024;
/// Shovels (static and dynamic together); a parameter past it is refused.
pub const SHOVELS_MAX: usize = 1024;

const _: () = assert!(SHOVEL_READ_BYTES_PER_TURN_MAX >= READ_CHUNK_BYTES);
const _: () = assert!(SHOVEL_OUTPUT_HIGH_BYTES < WRITE_BUFFER_HARD_BYTES);
const _: () = assert!(CLIENT_FRAME_MAX_BYTES >= FRAME_MIN_SIZE);

// Federation (src/definitions/federation.rs, src/broker/federation.rs, src/shovel/).

/// Parameters of each federation component (upstreams, upstream sets); one past it is
/// refused.
pub const FEDERATION_UPSTREAMS_MAX: usize = 1024;
/// Federation links (a federated exchange times its upstreams); past it a link is not
/// started and the log says so.
pub const FEDERATION_LINKS_MAX: usize = 1024;
/// Binding changes on federated exchanges the broker keeps for the links until the loop
/// takes them; past it the exchange's links list its bindings again instead (a resync).
pub(crate) const FEDERATION_BINDING_EVENTS_MAX: usize = 65_536;
/// Binding changes the loop hands to the links per turn; also the keys of a listing (a new
/// link, a resync) the links take in per turn, over all links.
pub(crate) const FEDERATION_BINDING_EVENTS_PER_TURN_MAX: usize = 4096;
/// queue.bind / queue.unbind one link sends upstream per loop turn (the rest next turn).
pub(crate) const FEDERATION_BINDS_PER_TURN_MAX: usize = 256;

const _: () = assert!(FEDERATION_BINDING_EVENTS_PER_TURN_MAX <= FEDERATION_BINDING_EVENTS_MAX);
// A link's binds cost no more per turn than its share of messages.
const _: () = assert!(FEDERATION_BINDS_PER_TURN_MAX <= SHOVEL_MESSAGES_PER_TURN_MAX);
