-- Every row that broke the contract, with why. Nothing is dropped silently.
SELECT source, raw, reason, DATE '{{ ds }}' AS ds
FROM (
  SELECT 'events' AS source, raw, reject_reason AS reason FROM stg_events WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT 'events', raw, 'duplicate' FROM event_duplicates WHERE copy > 1
  UNION ALL
  SELECT 'orders', raw, reject_reason FROM stg_orders WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT 'feedback', raw, reject_reason FROM stg_feedback WHERE reject_reason IS NOT NULL
  UNION ALL
  SELECT 'customers', raw, reject_reason FROM stg_customers WHERE reject_reason IS NOT NULL
) rejected
ORDER BY source, reason, raw
