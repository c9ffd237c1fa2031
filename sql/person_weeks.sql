-- The ISO weeks (Monday start, reporting time zone) in which each person was active (any valid
-- event or completed order), over the weeks lifecycle_status shows. lifecycle_status does not
-- read it: the check weekly_statuses_add_up counts active persons here, independently of the
-- bitmask lifecycle_status computes them from.
SELECT DISTINCT person_id, date_trunc('week', local_at) AS week_start
FROM (
  SELECT person_id, local_at FROM person_events
  UNION ALL
  SELECT customer_id, local_at FROM completed_orders
) activity
WHERE local_at >= date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ (var("lifecycle_weeks") - 1) * 7 }} days'
