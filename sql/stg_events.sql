-- Parse each NDJSON line. A line that is not a JSON object, has no id at all or an unparsable
-- timestamp keeps a `reject_reason`; the rest are typed and cut at as_of.
WITH parsed AS (
  SELECT
    line,
    dt,
    json_get_str(line, 'event_id')     AS event_id,
    json_get_str(line, 'occurred_at')  AS occurred_at_raw,
    json_get_str(line, 'customer_id')  AS customer_id,
    json_get_str(line, 'anonymous_id') AS anonymous_id,
    json_get_str(line, 'event_type')   AS event_type,
    json_get_str(line, 'channel')      AS channel,
    json_get_str(line, 'properties', 'category') AS category
  FROM events
  WHERE dt <= DATE '{{ ds }}' + INTERVAL '2 days'
),
typed AS (
  SELECT *, TRY_CAST(occurred_at_raw AS TIMESTAMP) AS occurred_at
  FROM parsed
)
SELECT
  event_id,
  occurred_at,
  customer_id,
  anonymous_id,
  event_type,
  channel,
  category,
  dt,
  line,
  CASE
    WHEN json_length(line) IS NULL THEN 'malformed'
    WHEN event_id IS NULL OR (customer_id IS NULL AND anonymous_id IS NULL) THEN 'missing_id'
    WHEN occurred_at IS NULL THEN 'bad_timestamp'
  END AS reject_reason
FROM typed
WHERE occurred_at IS NULL OR occurred_at < TIMESTAMP '{{ as_of }}'
