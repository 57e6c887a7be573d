//! Constants of the AMQP 0-9-1 spec: frame types, the frame end octet, the protocol header,
//! class ids, and the reply codes with their hard/soft classification. No numeric reply code
//! appears anywhere else in the crate.

/// The protocol header a 0-9-1 client sends first, and the one we answer a wrong header with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xce;
/// Type octet, channel, payload size.
pub const FRAME_HEADER_SIZE: usize = 7;
/// Header plus the frame end octet: what a frame costs beyond its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_SIZE + 1;
/// Spec: frame-min-size. Peers may not negotiate a smaller frame_max.
pub const FRAME_MIN_SIZE: u32 = 4096;

pub const CLASS_CONNECTION: u16 = 10;
pub const CLASS_BASIC: u16 = 60;

/// Reply codes of the spec. `is_hard` follows the spec's soft-error / hard-error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ReplyCode {
    Success = 200,
    ContentTooLarge = 311,
    NoRoute = 312,
    NoConsumers = 313,
    ConnectionForced = 320,
    InvalidPath = 402,
    AccessRefused = 403,
    NotFound = 404,
    ResourceLocked = 405,
    PreconditionFailed = 406,
    FrameError = 501,
    SyntaxError = 502,
    CommandInvalid = 503,
    ChannelError = 504,
    UnexpectedFrame = 505,
    ResourceError = 506,
    NotAllowed = 530,
    NotImplemented = 540,
    InternalError = 541,
}

impl ReplyCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Hard errors close the connection; soft errors close only the channel.
    pub fn is_hard(self) -> bool {
        matches!(
            self,
            ReplyCode::ConnectionForced
                | ReplyCode::InvalidPath
                | ReplyCode::FrameError
                | ReplyCode::SyntaxError
                | ReplyCode::CommandInvalid
                | ReplyCode::ChannelError
                | ReplyCode::UnexpectedFrame
                | ReplyCode::ResourceError
                | ReplyCode::NotAllowed
                | ReplyCode::NotImplemented
                | ReplyCode::InternalError
        )
    }

    /// The spec's constant name, which RabbitMQ puts at the start of every reply text.
    pub fn name(self) -> &'static str {
        match self {
            ReplyCode::Success => "OK",
            ReplyCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ReplyCode::NoRoute => "NO_ROUTE",
            ReplyCode::NoConsumers => "NO_CONSUMERS",
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_and_soft_match_the_spec_classes() {
        for c in [
            ReplyCode::AccessRefused,
            ReplyCode::NotFound,
            ReplyCode::ResourceLocked,
            ReplyCode::PreconditionFailed,
            ReplyCode::NoRoute,
        ] {
            assert!(!c.is_hard(), "{c:?}");
        }
        for c in [
            ReplyCode::FrameError,
            ReplyCode::ChannelError,
            ReplyCode::NotAllowed,
            ReplyCode::NotImplemented,
            ReplyCode::InternalError,
            ReplyCode::ConnectionForced,
        ] {
            assert!(c.is_hard(), "{c:?}");
        }
        assert_eq!(ReplyCode::PreconditionFailed.code(), 406);
    }
}
