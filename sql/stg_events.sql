-- Events parsed from NDJSON lines, up to the ds partition and before as_of.
-- A row breaking the contract keeps a reject_reason and its raw line; valid rows drop the line
-- (it is only needed again for duplicates, see event_duplicates.sql).
WITH parsed AS (
  SELECT
    line,
    json_length(line) IS NULL                    AS malformed,
    json_get_str(line, 'event_id')               AS event_id,
    json_get_str(line, 'occurred_at')            AS occurred_at_raw,
    json_get_str(line, 'customer_id')            AS customer_id,
    json_get_str(line, 'anonymous_id')           AS anonymous_id,
    json_get_str(line, 'event_type')             AS event_type,
    json_get_str(line, 'channel')                AS channel,
    json_get_str(line, 'properties', 'category') AS category
  FROM events
  WHERE dt <= DATE '{{ ds }}'
),
typed AS (
  SELECT *, TRY_CAST(occurred_at_raw AS TIMESTAMP) AS occurred_at,
    CASE
      WHEN malformed THEN 'malformed'
      WHEN event_id IS NULL OR (customer_id IS NULL AND anonymous_id IS NULL) THEN 'missing_id'
      WHEN TRY_CAST(occurred_at_raw AS TIMESTAMP) IS NULL THEN 'bad_timestamp'
    END AS reject_reason
  FROM parsed
)
SELECT
  event_id, occurred_at, customer_id, anonymous_id, event_type, channel, category, reject_reason,
  CASE WHEN reject_reason IS NOT NULL THEN line END AS raw
FROM typed
WHERE reject_reason IS NOT NULL OR occurred_at < TIMESTAMP '{{ as_of }}'
