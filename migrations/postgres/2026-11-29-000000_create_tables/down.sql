DROP TABLE job_telemetry_snapshots;
DROP TABLE backup_jobs;
DROP TABLE machines;
