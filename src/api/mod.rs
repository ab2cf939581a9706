//! gRPC transport: the `TelemetryService` implementation over `Hub`, and the one place where
//! hub errors become gRPC statuses.

pub mod guard;
pub mod lane;
pub mod service;
pub mod status;
