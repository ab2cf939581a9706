//! Black-box tests of the hub: the real server on 127.0.0.1:0 with a fresh database per test
//! (SQLite by default, PostgreSQL when TEST_DATABASE_URL=postgres://… names a server), driven
//! through a tonic client, grpcurl, raw grpc-web over HTTP/1.1 and the JSON/SSE endpoints.

mod common;
mod crash;
mod http;
mod ingest;
mod reads;
mod reporter;
mod scaleout;
mod security;
mod tools;
mod watch;
