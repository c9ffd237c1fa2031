-- One row per event_id: valid events, duplicates resolved, forgotten customers left out.
WITH kept AS (
  SELECT event_id, occurred_at, customer_id, anonymous_id, event_type, channel
FROM stg_events s
WHERE reject_reason IS NULL
  AND occurred_at < TIMESTAMP '{{ as_of }}'
  -- NOT EXISTS rather than NOT IN: the null-aware anti join of NOT IN must build its hash table
  -- on every staged event; this one builds on the few duplicates.
  -- On the fingerprint: every event whose fingerprint is in event_duplicates comes back below.
  AND NOT EXISTS (SELECT 1 FROM event_duplicates d WHERE d.event_key = s.event_key)
UNION ALL
SELECT event_id, occurred_at, customer_id, anonymous_id, event_type, channel
FROM event_duplicates
WHERE copy = 1
)
SELECT * FROM kept k
WHERE NOT EXISTS (SELECT 1 FROM forgotten_customers f WHERE f.customer_id = k.customer_id)
  AND NOT EXISTS (SELECT 1 FROM forgotten_anonymous_ids a WHERE a.anonymous_id = k.anonymous_id)
