-- The history benchmark's data, owned by bench-user: conversation 0 holds 100,000
-- messages, conversations 1..900 hold 1,000 each (1,000,000 in all). Each message reads
-- "message N" and ten words drawn from 2,000 ("term0".."term1999"), so one word is in about
-- 0.5% of messages, two given words in a few dozen, and "message" in every one.
-- Runs once Colloquy has migrated the database; inserts bypass the API for speed but keep
-- its invariants (seq numbering, message_count, UUIDv7-like time-ordered ids).
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO conversations (id, owner, title, specialist_id, message_count, created_at, updated_at)
SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, 'bench-user',
       'history ' || c, 'general', CASE WHEN c = 0 THEN 100000 ELSE 1000 END,
       now() - interval '1 day', now() - (c || ' seconds')::interval
FROM generate_series(0, 900) AS c;

INSERT INTO messages (id, conversation_id, seq, role, content, status, created_at)
SELECT gen_random_uuid(),
       ('01900000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid,
       s,
       CASE WHEN s % 2 = 1 THEN 'user' ELSE 'assistant' END,
       'message ' || g || ' ' || (
           SELECT string_agg('term' || (abs(hashint8(g * 16 + k)) % 2000), ' ')
           FROM generate_series(1, 10) AS k),
       'complete',
       now() - interval '1 day' + (s || ' milliseconds')::interval
FROM (
    SELECT g,
           CASE WHEN g < 100000 THEN 0 ELSE 1 + (g - 100000) / 1000 END AS c,
           CASE WHEN g < 100000 THEN g + 1 ELSE 1 + (g - 100000) % 1000 END AS s
    FROM generate_series(0, 999999) AS g
) AS n;
COMMIT;
ANALYZE conversations;
ANALYZE messages;
