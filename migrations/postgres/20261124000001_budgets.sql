-- Monthly spend caps set for one user, over the configured default. A row with a NULL cap
-- means "no cap" for that user; no row means the default applies.
CREATE TABLE budgets (
    user_id          text PRIMARY KEY,
    monthly_nano_usd bigint CHECK (monthly_nano_usd >= 0),
    updated_by       text NOT NULL,
    updated_at       timestamptz NOT NULL
);
