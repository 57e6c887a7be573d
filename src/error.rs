//! The one error type of the broker: a reply code and RabbitMQ's reply text. Whether it closes
//! a channel or the connection follows from the code alone (`ReplyCode::is_hard`); the session
//! layer turns it into channel.close or connection.close in one place (`Session::fail_method`).

use crate::protocol::ReplyCode;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: ReplyCode,
    /// Full reply text as RabbitMQ writes it: "NOT_FOUND - no queue 'q' in vhost '/'".
    pub text: String,
}

impl AmqpError {
    pub(crate) fn new(code: ReplyCode, detail: impl fmt::Display) -> Self {
        AmqpError {
            code,
            text: format!("{} - {}", code.name(), detail),
        }
    }
    pub(crate) fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotFound, detail)
    }
    pub(crate) fn precondition(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::PreconditionFailed, detail)
    }
    pub(crate) fn access_refused(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::AccessRefused, detail)
    }
    pub(crate) fn resource_locked(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::ResourceLocked, detail)
    }
    pub(crate) fn not_allowed(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotAllowed, detail)
    }
    pub(crate) fn not_implemented(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::NotImplemented, detail)
    }
    pub(crate) fn command_invalid(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::CommandInvalid, detail)
    }
    pub(crate) fn channel_error(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::ChannelError, detail)
    }
    pub(crate) fn frame_error(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::FrameError, detail)
    }
    pub(crate) fn unexpected_frame(detail: impl fmt::Display) -> Self {
        Self::new(ReplyCode::UnexpectedFrame, detail)
    }
    pub(crate) fn is_hard(&self) -> bool {
        self.code.is_hard()
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.code(), self.text)
    }
}

/// Shows a name from the wire in an error text or log line.
pub(crate) struct Show<'a>(pub &'a [u8]);

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
