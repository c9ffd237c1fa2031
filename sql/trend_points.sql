-- Weekly points per (dimension, dimension_value, metric) over the last trend_weeks complete ISO
-- weeks before as_of, plus three earlier weeks (for the previous week and the 4-week moving
-- average): order category × {revenue, orders, customers}, event channel × {events, persons}.
-- A step of its own, so that trend_series can read it twice without aggregating the events
-- twice (DataFusion plans a CTE again at every reference).
WITH orders_weekly AS (
  SELECT category AS dimension_value, date_trunc('week', local_at) AS week_start,
    CAST(SUM(amount) AS DOUBLE) AS revenue,
    CAST(COUNT(*) AS DOUBLE) AS orders,
    CAST(COUNT(DISTINCT customer_id) AS DOUBLE) AS customers
  FROM completed_orders
  WHERE category IS NOT NULL
    AND local_at >= date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '{{ (var("trend_weeks") + 3) * 7 }} days'
  GROUP BY category, date_trunc('week', local_at)
),
events_weekly AS (
  SELECT channel AS dimension_value, date_trunc('week', local_at) AS week_start,
    CAST(COUNT(*) AS DOUBLE) AS events,
    CAST(COUNT(DISTINCT person_id) AS DOUBLE) AS persons
  FROM person_events
  WHERE channel IS NOT NULL
    AND local_at >= date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '{{ (var("trend_weeks") + 3) * 7 }} days'
  GROUP BY channel, date_trunc('week', local_at)
),
points AS (
  SELECT 'category' AS dimension, o.dimension_value, m.metric, o.week_start,
    CASE m.metric WHEN 'revenue' THEN o.revenue WHEN 'orders' THEN o.orders ELSE o.customers END AS value
  FROM (VALUES ('revenue'), ('orders'), ('customers')) AS m(metric) CROSS JOIN orders_weekly o
  UNION ALL
  SELECT 'channel', e.dimension_value, m.metric, e.week_start,
    CASE m.metric WHEN 'events' THEN e.events ELSE e.persons END
  FROM (VALUES ('events'), ('persons')) AS m(metric) CROSS JOIN events_weekly e
)
SELECT p.* FROM points p JOIN trend_week_starts w ON w.week_start = p.week_start
