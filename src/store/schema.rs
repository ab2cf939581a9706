//! Diesel table definitions shared by the SQLite and PostgreSQL migrations.

diesel::table! {
    machines (name) {
        name -> Text,
        cpu_cores -> Nullable<Integer>,
        memory_bytes -> Nullable<BigInt>,
        disk_count -> Nullable<Integer>,
        os -> Nullable<Text>,
        first_seen_at_ms -> BigInt,
        last_seen_at_ms -> BigInt,
    }
}

diesel::table! {
    backup_jobs (job_id) {
        job_id -> Text,
        machine -> Text,
        job_type -> Text,
        status -> Text,
        started_at_ms -> BigInt,
        ended_at_ms -> Nullable<BigInt>,
        bytes_transferred -> BigInt,
        total_bytes -> BigInt,
        progress_percent -> Double,
        phase -> Text,
        transfer_speed_bps -> BigInt,
        peak_speed_bps -> BigInt,
        min_speed_bps -> Nullable<BigInt>,
        average_speed_bps -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        error_message -> Text,
        last_sequence -> BigInt,
        last_report_at_ms -> BigInt,
        last_received_at_ms -> BigInt,
        last_snapshot_at_ms -> Nullable<BigInt>,
        recent_speed_bps -> Double,
        estimated_completion_at_ms -> Nullable<BigInt>,
        performance_metrics -> Nullable<Binary>,
    }
}

diesel::table! {
    job_telemetry_snapshots (job_id, sampled_at_ms, sequence) {
        job_id -> Text,
        sampled_at_ms -> BigInt,
        sequence -> BigInt,
        bytes_transferred -> BigInt,
        transfer_speed_bps -> BigInt,
        progress_percent -> Double,
        phase -> Text,
    }
}

diesel::joinable!(backup_jobs -> machines (machine));
diesel::joinable!(job_telemetry_snapshots -> backup_jobs (job_id));
diesel::allow_tables_to_appear_in_same_query!(machines, backup_jobs, job_telemetry_snapshots);
