//! The error type of the session API.

use crate::{
    model::{ContentError, InvalidEmoji, InvalidId},
    protocol::{ErrorCode, WireError},
};

/// An operation of the Data API failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused the request, or the server refused the session it ran on (a refused
    /// token ends the session; its requests then fail with `UNAUTHORIZED`); nothing changed.
    #[error("{action} failed: {code}: {}", reasons.join("; "))]
    Rejected {
        /// What was attempted, for example `Send message to conversation c1`.
        action: String,
        /// The machine-readable reason.
        code: ErrorCode,
        /// Human-readable details from the engine.
        reasons: Vec<String>,
    },
    /// An id was empty.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// Session options were invalid.
    #[error("invalid session options: {0}")]
    InvalidOptions(String),
    /// A `load_more` count was outside the subscription's bounds.
    #[error("{action} failed: count {count} is outside 1..={max}")]
    OutOfRange {
        /// What was attempted.
        action: String,
        /// The count given.
        count: u32,
        /// The largest count allowed.
        max: u32,
    },
    /// Content cannot be sent, for example a link node or an empty text.
    #[error("invalid content: {0}")]
    InvalidContent(#[from] ContentError),
    /// A reaction's emoji is not one (see [`ReactionsRef`](crate::ReactionsRef)).
    #[error(transparent)]
    InvalidEmoji(#[from] InvalidEmoji),
    /// The session or subscription ended before the operation completed.
    #[error("{action} failed because the session or subscription ended")]
    Ended {
        /// What was attempted.
        action: String,
    },
    /// The background runtime that carries sessions' connections could not start (the
    /// operating system refused its threads). See [`get_talk_session`](crate::get_talk_session).
    #[error("talkstore could not start its background runtime")]
    NoRuntime,
}

impl Error {
    /// The machine-readable code of a rejection, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn rejected(action: String, error: WireError) -> Self {
        Error::Rejected {
            action,
            code: error.code,
            reasons: error.reasons,
        }
    }

    pub(crate) fn ended(action: impl Into<String>) -> Self {
        Error::Ended {
            action: action.into(),
        }
    }
}
