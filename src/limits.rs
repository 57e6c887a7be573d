//! Every hard bound of the broker as a named constant, units last, with the relations between
//! them checked at compile time. Runtime-tunable values live in `config.rs` and are validated
//! against these.

use crate::protocol::constants::{FRAME_MIN_SIZE, FRAME_OVERHEAD};

/// Largest frame we accept or send, header and end octet included; offered in connection.tune.
pub const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// Channels per connection offered in connection.tune (RabbitMQ's default).
pub const CHANNEL_MAX: u16 = 2047;
/// Heartbeat interval offered in connection.tune (RabbitMQ's default).
pub const HEARTBEAT_SECS: u16 = 60;
/// Nesting of tables and arrays inside one field table; deeper input is malformed.
pub const TABLE_DEPTH_MAX: usize = 16;
/// Largest message body accepted (RabbitMQ's max_message_size default, 128 MiB).
pub const MESSAGE_SIZE_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// A socket that has not finished connection.open by then is closed (RabbitMQ: 10 s).
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// After we send connection.close, how long we wait for close-ok before dropping the socket.
pub const CLOSE_TIMEOUT_SECS: u64 = 3;
/// Bytes read from one connection per loop turn, so one busy peer cannot starve the others.
pub const READ_BYTES_PER_TURN_MAX: usize = 64 * 1024;
/// Size of each read syscall into the shared read buffer.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Deliveries stop while a connection's unsent output is above this, and the messages wait
/// in their queues instead of in memory per socket.
pub const WRITE_BUFFER_HIGH_BYTES: usize = 1024 * 1024;
/// Deliveries resume once unsent output falls below this (hysteresis against flapping).
pub const WRITE_BUFFER_LOW_BYTES: usize = 256 * 1024;
/// Largest partial-frame buffer kept allocated for an idle connection.
pub const READ_LEFTOVER_KEEP_BYTES: usize = 4 * 1024;
/// Most of a message body reserved when its content header arrives; the rest grows with the
/// body frames, so a header announcing a huge body costs nothing until the body comes.
pub const BODY_PREALLOCATE_MAX_BYTES: usize = 1024 * 1024;
/// A connection whose unsent output reaches this (a peer that never reads) is closed. One
/// delivery may cross the high-water mark by a whole message, hence the message size term.
pub const WRITE_BUFFER_HARD_BYTES: usize = 64 * 1024 * 1024 + MESSAGE_SIZE_MAX_BYTES as usize;
/// Largest unsent-output buffer kept allocated while a connection is idle.
pub const WRITE_BUFFER_KEEP_BYTES: usize = 64 * 1024;
/// Messages delivered to one channel and not yet acked, even with prefetch_count 0.
pub const UNACKED_PER_CHANNEL_MAX: usize = 1 << 20;
/// A durable queue keeps at most this many ready messages in memory; beyond it, messages
/// stay in the store and only a small index entry per message stays in memory.
pub const QUEUE_WINDOW_MESSAGES_MAX: usize = 8192;
/// ... or at most this many bytes of them.
pub const QUEUE_WINDOW_BYTES_MAX: usize = 8 * 1024 * 1024;
/// A segment of the message log is closed and the next one started once it reaches this.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of the message log compaction reads and copies in one loop turn (a larger record is
/// copied in pieces of this size over several turns).
pub const COMPACTION_BYTES_PER_TURN: usize = 1024 * 1024;
/// Segments one compaction pass copies into one new file.
pub const COMPACTION_SOURCES_MAX: usize = 16;
/// Bytes of definition records read per loop turn while a new snapshot is built.
pub const DEFINITIONS_SNAPSHOT_BYTES_PER_TURN: usize = 256 * 1024;
/// The definitions journal is folded into a new snapshot once it is larger than the current
/// snapshot and than this, so a snapshot's cost is spread over at least as many changes.
pub const DEFINITIONS_JOURNAL_MIN_BYTES: u64 = 1024 * 1024;
/// Messages read back from the store at once when a queue's window runs dry.
pub const PAGE_IN_BATCH_MESSAGES: usize = 1024;
/// Deliveries made from one queue in one pass before other queues get a turn.
pub const DELIVERIES_PER_QUEUE_PER_TURN_MAX: usize = 16384;
/// Events taken from the poller per wake-up.
pub const EVENTS_PER_POLL_MAX: usize = 1024;
/// Connections accepted at once; past this, new sockets are accepted and closed at once.
pub const CONNECTIONS_MAX: usize = 65_536;

const _: () = assert!(FRAME_MAX_BYTES >= FRAME_MIN_SIZE);
const _: () = assert!(READ_BYTES_PER_TURN_MAX >= READ_CHUNK_BYTES);
const _: () = assert!(WRITE_BUFFER_HARD_BYTES > WRITE_BUFFER_HIGH_BYTES + FRAME_MAX_BYTES as usize);
const _: () = assert!(WRITE_BUFFER_LOW_BYTES < WRITE_BUFFER_HIGH_BYTES);
const _: () = assert!(FRAME_OVERHEAD < FRAME_MIN_SIZE as usize);
// Compaction parses a large record's fixed fields (up to 65,535 queue ids) from one turn's read.
const _: () = assert!(COMPACTION_BYTES_PER_TURN >= 64 + 4 * u16::MAX as usize);
const _: () = assert!((COMPACTION_BYTES_PER_TURN as u64) < SEGMENT_SIZE_MAX_BYTES);
// Offsets within a segment are u32; one record may exceed the segment size by a message.
const _: () = assert!(SEGMENT_SIZE_MAX_BYTES + 2 * MESSAGE_SIZE_MAX_BYTES < u32::MAX as u64);
const _: () = assert!(DEFINITIONS_SNAPSHOT_BYTES_PER_TURN as u64 <= DEFINITIONS_JOURNAL_MIN_BYTES);
