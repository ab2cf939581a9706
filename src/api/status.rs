//! Error policy: client mistakes keep their message (it names the field and the rule); storage
//! trouble becomes UNAVAILABLE so agents retry; internal causes are logged, never sent.

use crate::error::Error;
use tonic::{Code, Status};

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(m) => Status::not_found(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Status::new(
                    Code::Unavailable,
                    "the hub's database is unavailable; retry later",
                )
            }
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error; see the hub's log")
            }
        }
    }
}
