//! AMQP 0-9-1 codec: bytes in, borrowed frames and methods out; frames appended to a buffer on
//! the way back. Pure: no I/O, no broker state. See `frame.rs` for the frame layout.

pub mod constants;
pub mod frame;
pub mod method;
pub mod outbox;
pub mod properties;
pub mod table;
pub mod wire;

pub use constants::ReplyCode;
pub use frame::{parse_frame, Frame, FrameError, FrameKind, Parsed};
pub use method::Method;
pub use outbox::Outbox;
pub use properties::{BasicProperties, ContentHeader};
pub use table::{FieldTable, FieldValue};
pub use wire::WireError;
