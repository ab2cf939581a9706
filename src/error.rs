//! The hub's one error type. Every layer returns it; `api::status` maps it to a gRPC status in
//! exactly one place. Messages of `InvalidArgument` name the field and the rule; `Internal` and
//! `Unavailable` carry causes for the log only, never for the client.

/// What went wrong, in the terms the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client input broke a rule; nothing was changed.
    #[error("{field}: {rule}")]
    InvalidArgument { field: &'static str, rule: String },
    /// The job or machine asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the job's state does not allow it (e.g. it has ended).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database cannot be reached or refused a commit; the client should retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for a rejected field.
    pub fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            rule: rule.into(),
        }
    }
}

/// Result with the hub's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
