-- Leases of background jobs that only one instance may run at a time (retention): whoever
-- holds an unexpired lease runs the job; an instance that dies lets its lease run out.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
