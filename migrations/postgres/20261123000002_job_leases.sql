-- Leases of background jobs that only one instance may run at a time (retention): whoever
-- holds an unexpired lease runs the job; an instance that dies lets its lease run out.
CREATE TABLE job_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
