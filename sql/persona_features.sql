-- Behavioural features of every known customer with at least one completed order.
-- The k-means step standardises each feature (z-score) before clustering.
WITH recent AS (
  SELECT person_id, COUNT(*) AS events_90d
  FROM person_events
  WHERE occurred_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '90 days'
  GROUP BY person_id
)
SELECT
  j.person_id,
  CAST(j.recency_days AS DOUBLE) AS recency_days,
  CAST(j.frequency AS DOUBLE) AS frequency,
  CAST(j.monetary AS DOUBLE) AS monetary,
  CAST(COALESCE(r.events_90d, 0) AS DOUBLE) AS events_90d,
  ln(1.0 + j.frequency) AS log_frequency,
  ln(1.0 + CAST(j.monetary AS DOUBLE)) AS log_monetary,
  CAST(j.monetary AS DOUBLE) / j.frequency AS avg_order_value,
  ln(1.0 + COALESCE(r.events_90d, 0)) AS log_events_90d
FROM journey_base j
LEFT JOIN recent r ON r.person_id = j.person_id
WHERE j.is_known AND j.orders > 0
