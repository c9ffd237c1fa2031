-- Every copy of an event_id seen more than once. The copy kept is the earliest occurred_at, then
-- the smallest raw line; the others are quarantined as `duplicate`. Their raw lines are not kept
-- in stg_events, so every event file is read a second time and only lines of those ids are kept
-- (the largest cost of the pipeline at 10M events; see the README's Benchmarks).
WITH repeated AS (
  SELECT event_id FROM stg_events WHERE reject_reason IS NULL GROUP BY event_id HAVING COUNT(*) > 1
),
lines AS (
  SELECT line, json_get_str(line, 'event_id') AS event_id
  FROM events
  WHERE dt <= DATE '{{ ds }}' AND json_get_str(line, 'event_id') IN (SELECT event_id FROM repeated)
),
copies AS (
  SELECT
    event_id,
    TRY_CAST(json_get_str(line, 'occurred_at') AS TIMESTAMP) AS occurred_at,
    json_get_str(line, 'customer_id')            AS customer_id,
    json_get_str(line, 'anonymous_id')           AS anonymous_id,
    json_get_str(line, 'event_type')             AS event_type,
    json_get_str(line, 'channel')                AS channel,
    json_get_str(line, 'properties', 'category') AS category,
    line AS raw
  FROM lines
)
SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY occurred_at, raw) AS copy
FROM copies
WHERE occurred_at < TIMESTAMP '{{ as_of }}'
