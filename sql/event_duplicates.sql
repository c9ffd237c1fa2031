-- Every copy of an event_id whose fingerprint was seen more than once among valid events (a
-- single copy whose id merely shares a fingerprint comes out as copy 1, and stays valid). The copy kept is the earliest
-- occurred_at, then the smallest raw line; the others are quarantined as `duplicate`.
-- stg_events keeps no raw line for valid rows (it would double the memory of the run), so the
-- event files are read a second time: only each line's event_id is read (json_get_str stops at
-- that key), and the few lines of repeated ids are parsed in full.
{% if events_format == 'parquet' -%}
-- Parquet exports: the rows of repeated ids are read again by their event_id column alone.
WITH copies AS (
  SELECT
    event_id, fingerprint(event_id) AS event_key, parse_rfc3339(occurred_at) AS occurred_at, customer_id,
    anonymous_id, event_type, channel,
    csv_record(event_id, occurred_at, customer_id, anonymous_id, event_type, channel, properties) AS raw
  FROM events
  WHERE dt <= DATE '{{ ds }}' + INTERVAL '{{ var("late_arrival_days") }} days'
    AND fingerprint(event_id) IN (SELECT event_key FROM repeated_event_ids)
)
{% else -%}
WITH lines AS (
  SELECT line, fingerprint(json_get_str(line, 'event_id')) AS event_key
  FROM events
  WHERE dt <= DATE '{{ ds }}' + INTERVAL '{{ var("late_arrival_days") }} days'
),
-- repeated_event_ids is a small materialized table with exact statistics, so the join builds its
-- hash table on it once and streams the lines past it without shuffling them between threads.
matched AS (
  SELECT l.line FROM repeated_event_ids r JOIN lines l ON l.event_key = r.event_key
),
fields AS (
  SELECT
    line,
    json_fields(line, 'event_id', 'occurred_at', 'customer_id', 'anonymous_id', 'event_type', 'channel') AS f
  FROM matched
),
copies AS (
  SELECT
    f['event_id']                                   AS event_id,
    fingerprint(f['event_id'])                      AS event_key,
    parse_rfc3339(f['occurred_at'])                 AS occurred_at,
    f['customer_id']                                AS customer_id,
    f['anonymous_id']                               AS anonymous_id,
    f['event_type']                                 AS event_type,
    f['channel']                                    AS channel,
    line                                            AS raw
  FROM fields
)
{% endif -%}
SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY occurred_at, raw) AS copy
FROM copies
-- The same rules as stg_events: a line that is rejected there is not a copy here.
WHERE event_id IS NOT NULL
  AND (customer_id IS NOT NULL OR anonymous_id IS NOT NULL)
  AND occurred_at < TIMESTAMP '{{ as_of }}'
