-- Every row that broke the contract, with why. Nothing is dropped silently, except the rows of
-- customers who asked to be forgotten (stg_orders, stg_feedback and stg_customers leave them out).
WITH bad_events AS (
  SELECT raw, reject_reason AS reason, customer_id, anonymous_id FROM stg_events WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT raw, 'duplicate', customer_id, anonymous_id FROM event_duplicates WHERE copy > 1
)
SELECT source, raw, reason, DATE '{{ ds }}' AS ds
FROM (
  SELECT 'events' AS source, raw, reason FROM bad_events e
  WHERE NOT EXISTS (SELECT 1 FROM forgotten_customers f WHERE f.customer_id = e.customer_id)
    AND NOT EXISTS (SELECT 1 FROM forgotten_anonymous_ids a WHERE a.anonymous_id = e.anonymous_id)
  UNION ALL
  SELECT 'orders', raw, reject_reason FROM stg_orders WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT 'feedback', raw, reject_reason FROM stg_feedback WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT 'customers', raw, reject_reason FROM stg_customers WHERE reject_reason IS NOT NULL
) rejected
ORDER BY source, reason, raw
