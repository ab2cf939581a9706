-- A progress write (every report on PostgreSQL) should rewrite the job's row and nothing
-- else: with no indexed column changing, PostgreSQL updates the row in place (HOT) without
-- touching any index. The stall sweep's index listed running jobs by last_received_at_ms,
-- which every progress write changes; running jobs are now listed by id only (constant while
-- a job runs), and the sweep checks the time on each row.
DROP INDEX backup_jobs_running;
CREATE INDEX backup_jobs_running ON backup_jobs (job_id) WHERE status = 'running';

-- Room on each page for the in-place update of its rows.
ALTER TABLE backup_jobs SET (fillfactor = 70);
