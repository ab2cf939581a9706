CREATE TABLE job_telemetry_snapshots_with_rowid (
    job_id TEXT NOT NULL REFERENCES backup_jobs (job_id) ON DELETE CASCADE,
    sampled_at_ms BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    bytes_transferred BIGINT NOT NULL,
    transfer_speed_bps BIGINT NOT NULL,
    progress_percent DOUBLE PRECISION NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (job_id, sampled_at_ms, sequence)
);
INSERT INTO job_telemetry_snapshots_with_rowid
    SELECT job_id, sampled_at_ms, sequence, bytes_transferred, transfer_speed_bps,
           progress_percent, phase
    FROM job_telemetry_snapshots;
DROP TABLE job_telemetry_snapshots;
ALTER TABLE job_telemetry_snapshots_with_rowid RENAME TO job_telemetry_snapshots;

DROP INDEX backup_jobs_running;
CREATE INDEX backup_jobs_running ON backup_jobs (last_received_at_ms) WHERE status = 'running';
