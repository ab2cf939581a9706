-- A progress write (one per stored snapshot) should rewrite the job's row and nothing else.
-- The stall sweep's index listed running jobs by last_received_at_ms, which every progress
-- write changes: an index entry moved per snapshot. Running jobs are now listed by id only
-- (constant while a job runs); the sweep checks the time on each row.
DROP INDEX backup_jobs_running;
CREATE INDEX backup_jobs_running ON backup_jobs (job_id) WHERE status = 'running';

-- Snapshots stored in their primary key's order (no separate rowid tree): an insert writes
-- one B-tree instead of two, and a job's points lie together for the rollup.
CREATE TABLE job_telemetry_snapshots_by_job (
    job_id TEXT NOT NULL REFERENCES backup_jobs (job_id) ON DELETE CASCADE,
    sampled_at_ms BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    bytes_transferred BIGINT NOT NULL,
    transfer_speed_bps BIGINT NOT NULL,
    progress_percent DOUBLE PRECISION NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (job_id, sampled_at_ms, sequence)
) WITHOUT ROWID;
INSERT INTO job_telemetry_snapshots_by_job
    SELECT job_id, sampled_at_ms, sequence, bytes_transferred, transfer_speed_bps,
           progress_percent, phase
    FROM job_telemetry_snapshots;
DROP TABLE job_telemetry_snapshots;
ALTER TABLE job_telemetry_snapshots_by_job RENAME TO job_telemetry_snapshots;
