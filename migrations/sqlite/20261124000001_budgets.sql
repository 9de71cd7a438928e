-- Monthly spend caps set for one user, over the configured default. A row with a NULL cap
-- means "no cap" for that user; no row means the default applies.
CREATE TABLE budgets (
    user_id          TEXT PRIMARY KEY NOT NULL,
    monthly_nano_usd INTEGER CHECK (monthly_nano_usd >= 0),
    updated_by       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
