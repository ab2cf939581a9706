-- Machines that have reported at least one job.
CREATE TABLE machines (
    name TEXT PRIMARY KEY NOT NULL,
    cpu_cores INTEGER,
    memory_bytes BIGINT,
    disk_count INTEGER,
    os TEXT,
    first_seen_at_ms BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL
);

-- One row per backup job; performance_metrics holds the rolled-up record once it ends.
CREATE TABLE backup_jobs (
    job_id TEXT PRIMARY KEY NOT NULL,
    machine TEXT NOT NULL REFERENCES machines (name),
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    bytes_transferred BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL,
    progress_percent DOUBLE PRECISION NOT NULL,
    phase TEXT NOT NULL,
    transfer_speed_bps BIGINT NOT NULL,
    peak_speed_bps BIGINT NOT NULL,
    min_speed_bps BIGINT,
    average_speed_bps BIGINT,
    duration_ms BIGINT,
    error_message TEXT NOT NULL,
    last_sequence BIGINT NOT NULL,
    last_report_at_ms BIGINT NOT NULL,
    last_received_at_ms BIGINT NOT NULL,
    last_snapshot_at_ms BIGINT,
    recent_speed_bps DOUBLE PRECISION NOT NULL DEFAULT 0,
    estimated_completion_at_ms BIGINT,
    performance_metrics BYTEA
);
CREATE INDEX backup_jobs_by_machine ON backup_jobs (machine, started_at_ms DESC, job_id DESC);
CREATE INDEX backup_jobs_by_start ON backup_jobs (started_at_ms DESC, job_id DESC);
CREATE INDEX backup_jobs_running ON backup_jobs (last_received_at_ms) WHERE status = 'running';
CREATE INDEX backup_jobs_by_end ON backup_jobs (ended_at_ms);

-- Raw 30-second samples of running jobs; deleted by the rollup.
CREATE TABLE job_telemetry_snapshots (
    job_id TEXT NOT NULL REFERENCES backup_jobs (job_id) ON DELETE CASCADE,
    sampled_at_ms BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    bytes_transferred BIGINT NOT NULL,
    transfer_speed_bps BIGINT NOT NULL,
    progress_percent DOUBLE PRECISION NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (job_id, sampled_at_ms, sequence)
);
