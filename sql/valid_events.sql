-- One row per event_id: valid events, duplicates resolved.
SELECT event_id, occurred_at, customer_id, anonymous_id, event_type, channel, category
FROM stg_events
WHERE reject_reason IS NULL
  AND event_id NOT IN (SELECT event_id FROM event_duplicates)
UNION ALL
SELECT event_id, occurred_at, customer_id, anonymous_id, event_type, channel, category
FROM event_duplicates
WHERE copy = 1
