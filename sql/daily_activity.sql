SELECT
  CAST(date_trunc('day', occurred_at) AS DATE) AS day,
  channel,
  COUNT(*) AS events,
  COUNT(DISTINCT coalesce(customer_id, 'anon:' || anonymous_id)) AS persons
FROM stg_events
WHERE reject_reason IS NULL
  AND occurred_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("activity_days") }} days'
GROUP BY 1, 2
ORDER BY 1, 2
