DROP INDEX backup_jobs_running;
CREATE INDEX backup_jobs_running ON backup_jobs (last_received_at_ms) WHERE status = 'running';
ALTER TABLE backup_jobs RESET (fillfactor);
