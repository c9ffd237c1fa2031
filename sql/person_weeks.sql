-- The ISO weeks (Monday start, reporting time zone) in which each person was active:
-- any valid event or completed order.
SELECT DISTINCT person_id, date_trunc('week', local_at) AS week_start
FROM (
  SELECT person_id, local_at FROM person_events
  UNION ALL
  SELECT customer_id, local_at FROM completed_orders
) activity
