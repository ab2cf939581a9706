//! Generated protobuf types and gRPC stubs for `backwatch.v1`, plus the descriptor set that
//! server reflection serves.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("backwatch.v1");

/// Encoded `FileDescriptorSet` of the backwatch protos, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("backwatch_descriptor");
