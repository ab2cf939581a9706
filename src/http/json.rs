//! The protobuf JSON mapping of `backwatch.v1` messages, read from the descriptor set compiled
//! with the protos (prost-reflect) rather than from hand-written structs, so the JSON always
//! follows `telemetry.proto`: lowerCamelCase names, enums by name (`"JOB_STATUS_SUCCEEDED"`),
//! 64-bit integers as strings, Timestamps in RFC 3339, Durations like `"1.5s"`.
//!
//! Scalars, enums and lists at their default value are written too (`"0"`, `""`, `[]`), so a
//! script finds every field of a message; a message field that is unset is left out (`endedAt`
//! of a running job, `performance` of a watch update before the last).

use crate::error::{Error, Result};
use crate::proto;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

/// A generated message whose JSON form this module can write: its full protobuf name, which
/// the generated code does not carry.
pub trait ProtoMessage: prost::Message {
    /// `package.Message`, as in the descriptor set.
    const FULL_NAME: &'static str;
}

macro_rules! proto_messages {
    ($($name:ident),* $(,)?) => {
        $(impl ProtoMessage for proto::$name {
            const FULL_NAME: &'static str = concat!("backwatch.v1.", stringify!($name));
        })*
        /// Every message with a [`ProtoMessage`] impl, for the test that checks the pool has them.
        #[cfg(test)]
        const ALL: &[&str] = &[$(concat!("backwatch.v1.", stringify!($name))),*];
    };
}

proto_messages!(
    MachineInfo,
    ReportProgressRequest,
    ReportProgressResponse,
    Job,
    SpeedPoint,
    PerformanceRecord,
    GetHistoryRequest,
    GetHistoryResponse,
    WatchJobRequest,
    WatchJobResponse,
    Machine,
    MachineOverview,
    ListMachinesRequest,
    ListMachinesResponse,
    JobSummary,
    ListJobsRequest,
    ListJobsResponse,
    GetMachineSummaryRequest,
    TrendPoint,
    GetMachineSummaryResponse,
);

/// Writes generated messages as JSON; built once per server from the embedded descriptor set
/// (which carries the imported well-known types: protox includes imports).
pub struct ProtoJson {
    pool: DescriptorPool,
    options: SerializeOptions,
}

impl ProtoJson {
    pub fn new() -> Result<Self> {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| Error::Internal(format!("backwatch descriptor set: {e}")))?;
        Ok(ProtoJson {
            pool,
            options: SerializeOptions::new().skip_default_fields(false),
        })
    }

    /// The message as a JSON value.
    pub fn to_value<M: ProtoMessage>(&self, message: &M) -> Result<serde_json::Value> {
        self.dynamic(message)?
            .serialize_with_options(serde_json::value::Serializer, &self.options)
            .map_err(|e| Error::Internal(format!("{} as JSON: {e}", M::FULL_NAME)))
    }

    /// The message as compact JSON text.
    pub fn to_string<M: ProtoMessage>(&self, message: &M) -> Result<String> {
        let mut out = serde_json::Serializer::new(Vec::new());
        self.dynamic(message)?
            .serialize_with_options(&mut out, &self.options)
            .map_err(|e| Error::Internal(format!("{} as JSON: {e}", M::FULL_NAME)))?;
        String::from_utf8(out.into_inner()).map_err(|e| Error::Internal(e.to_string()))
    }

    fn descriptor(&self, name: &str) -> Result<MessageDescriptor> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| Error::Internal(format!("{name} is not in the descriptor set")))
    }

    /// The same message, readable by field descriptors: encoded by prost, decoded by reflection.
    fn dynamic<M: ProtoMessage>(&self, message: &M) -> Result<DynamicMessage> {
        DynamicMessage::decode(
            self.descriptor(M::FULL_NAME)?,
            message.encode_to_vec().as_slice(),
        )
        .map_err(|e| Error::Internal(format!("{} by reflection: {e}", M::FULL_NAME)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_named_message_is_in_the_descriptor_set() {
        let json = ProtoJson::new().unwrap();
        for name in ALL {
            json.descriptor(name).unwrap();
        }
    }

    #[test]
    fn writes_the_protobuf_json_mapping() {
        let json = ProtoJson::new().unwrap();
        let reply = proto::GetHistoryResponse {
            job: Some(proto::Job {
                job_id: "j-1".into(),
                status: proto::JobStatus::Succeeded as i32,
                bytes_transferred: 12_000_000_000,
                started_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 500_000_000,
                }),
                duration: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                ..Default::default()
            }),
            performance: None,
        };
        let value = json.to_value(&reply).unwrap();
        let job = &value["job"];
        assert_eq!(job["jobId"], "j-1");
        assert_eq!(job["status"], "JOB_STATUS_SUCCEEDED");
        assert_eq!(
            job["jobType"], "JOB_TYPE_UNSPECIFIED",
            "defaults are written"
        );
        assert_eq!(job["bytesTransferred"], "12000000000");
        assert_eq!(job["totalBytes"], "0");
        assert_eq!(job["errorMessage"], "");
        assert_eq!(job["startedAt"], "2023-11-14T22:13:20.500Z");
        assert_eq!(job["duration"], "1.500s");
        assert!(job.get("endedAt").is_none(), "unset messages are left out");
        assert!(value.get("performance").is_none());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json.to_string(&reply).unwrap()).unwrap(),
            value
        );
        let empty = json.to_value(&proto::WatchJobResponse::default()).unwrap();
        assert_eq!(empty, json!({ "points": [] }));
    }
}
