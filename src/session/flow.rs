//! Publisher flow (RabbitMQ's credit flow, single-threaded): a connection that routed a
//! message into a queue over its memory mark is not read until that queue drains under its
//! low mark, or for at most `FLOW_PAUSE_MAX_MS`. Only publishing stops: deliveries to the
//! connection go on, and a connection is never paused for a queue it drains itself with
//! manual acks (its acks are what the queue waits for). The session decides when a pause
//! starts and ends; the reactor stops and resumes reading. Also the connection state RabbitMQ
//! reports for it (running, flow, blocked).

use super::{Ctx, Session};
use crate::broker::queue::QueueId;
use crate::broker::Broker;
use crate::limits::{FLOW_PAUSE_MAX_MS, FLOW_STATE_LINGER_MS};
use std::time::{Duration, Instant};

/// A pause: the queue that caused it and when it began.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlowPause {
    queue: QueueId,
    since: Instant,
}

/// A connection's state as RabbitMQ's management API and `rabbitmqctl list_connections`
/// report it, as far as publishing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    Running,
    /// Paused by a queue it publishes into, now or within the last `FLOW_STATE_LINGER_MS`.
    Flow,
    /// Not read while a resource alarm lasts.
    Blocked,
}

impl FlowState {
    /// The word RabbitMQ uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Running => "running",
            FlowState::Flow => "flow",
            FlowState::Blocked => "blocked",
        }
    }
}

impl Session {
    /// After a publish was routed: pauses the connection if the broker says the message went
    /// into a queue over its mark that this connection does not drain itself.
    pub(super) fn note_flow_pressure(&mut self, ctx: &Ctx<'_>) {
        if self.flow.is_some() {
            return;
        }
        let Some(queue) = ctx.broker.publish_pressure() else {
            return;
        };
        if self.flow_exempt == Some(queue) {
            return;
        }
        if ctx.broker.drains_with_acks(queue, self.id) {
            self.flow_exempt = Some(queue);
            return;
        }
        self.flow = Some(FlowPause {
            queue,
            since: ctx.now,
        });
    }

    /// This connection's consumers changed: whether it drains a queue itself is asked again.
    pub(super) fn consumers_changed(&mut self) {
        self.flow_exempt = None;
    }

    /// Paused by publisher flow: the reactor does not read it.
    pub fn in_flow(&self) -> bool {
        self.flow.is_some()
    }

    /// When the current pause ends at the latest.
    pub fn flow_deadline(&self) -> Option<Instant> {
        self.flow
            .map(|p| p.since + Duration::from_millis(FLOW_PAUSE_MAX_MS))
    }

    /// Ends the pause if its queue has drained (or is gone, or lost its consumers) or the
    /// pause has lasted `FLOW_PAUSE_MAX_MS`; returns true if reading may resume.
    pub fn flow_check(&mut self, broker: &mut Broker, now: Instant) -> bool {
        let Some(pause) = self.flow else {
            return true;
        };
        let waited = now.saturating_duration_since(pause.since);
        if waited < Duration::from_millis(FLOW_PAUSE_MAX_MS) && broker.queue_pressure(pause.queue) {
            return false;
        }
        self.flow = None;
        self.flow_ended = Some(now);
        true
    }

    /// The state RabbitMQ would report: blocked by an alarm, in flow (paused now or lately),
    /// or running.
    pub fn flow_state(&self, now: Instant) -> FlowState {
        if self.blocked {
            return FlowState::Blocked;
        }
        let lately = self.flow_ended.is_some_and(|t| {
            now.saturating_duration_since(t) < Duration::from_millis(FLOW_STATE_LINGER_MS)
        });
        if self.flow.is_some() || lately {
            FlowState::Flow
        } else {
            FlowState::Running
        }
    }
}
