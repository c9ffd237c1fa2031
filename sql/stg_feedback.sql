WITH typed AS (
  SELECT *, parse_rfc3339(responded_at) AS responded_ts, TRY_CAST(nps_score AS BIGINT) AS score
  FROM feedback
)
SELECT
  response_id,
  customer_id,
  responded_ts AS responded_at,
  local_time(responded_ts, '{{ timezone }}') AS local_at,
  score AS nps_score,
  comment,
  CASE
    WHEN response_id IS NULL OR customer_id IS NULL THEN 'missing_id'
    WHEN responded_ts IS NULL THEN 'bad_timestamp'
    WHEN score IS NULL OR score < 0 OR score > 10 THEN 'bad_score'
  END AS reject_reason,
  csv_record(response_id, customer_id, responded_at, nps_score, comment) AS raw
FROM typed
WHERE NOT EXISTS (SELECT 1 FROM forgotten_customers f WHERE f.customer_id = typed.customer_id)
  AND (responded_ts IS NULL OR responded_ts < TIMESTAMP '{{ as_of }}')
