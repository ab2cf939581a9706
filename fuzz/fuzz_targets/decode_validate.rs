//! Fuzz target: arbitrary bytes through the decoding and validation an agent's report gets
//! before it touches any state. Must never panic; accepted reports must keep the rules.
#![no_main]

use backwatch::domain::report::{validate, validate_job_id, MAX_ERROR_MESSAGE_BYTES};
use backwatch::proto::ReportProgressRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// A fixed hub clock, so runs are reproducible.
const NOW: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ReportProgressRequest::decode(data) else {
        return;
    };
    if let Ok(report) = validate(&req, NOW) {
        assert!(validate_job_id(&report.job_id).is_ok());
        assert!((0.0..=100.0).contains(&report.progress_percent));
        assert!(report.error_message.len() <= MAX_ERROR_MESSAGE_BYTES);
    }
});
