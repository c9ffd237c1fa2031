-- Weekly series per (dimension, dimension_value, metric) over the last trend_weeks complete ISO
-- weeks before as_of: order category × {revenue, orders, customers}, event channel × {events, persons}.
-- Three earlier weeks are computed too, for the previous week and the 4-week moving average; older
-- rows are filtered out before grouping.
WITH weeks AS (
  SELECT value AS week_start
  FROM generate_series(
    date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '{{ (var("trend_weeks") + 3) * 7 }} days',
    date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '7 days',
    INTERVAL '7 days'
  )
),
orders_weekly AS (
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
  SELECT 'category' AS dimension, dimension_value, 'revenue' AS metric, week_start, revenue AS value FROM orders_weekly
  UNION ALL SELECT 'category', dimension_value, 'orders', week_start, orders FROM orders_weekly
  UNION ALL SELECT 'category', dimension_value, 'customers', week_start, customers FROM orders_weekly
  UNION ALL SELECT 'channel', dimension_value, 'events', week_start, events FROM events_weekly
  UNION ALL SELECT 'channel', dimension_value, 'persons', week_start, persons FROM events_weekly
),
in_range AS (
  SELECT p.* FROM points p JOIN weeks w ON w.week_start = p.week_start
),
series AS (
  SELECT DISTINCT dimension, dimension_value, metric FROM in_range
),
filled AS (
  SELECT s.dimension, s.dimension_value, s.metric, w.week_start, COALESCE(p.value, 0) AS value
  FROM series s
  CROSS JOIN weeks w
  LEFT JOIN in_range p
    ON p.dimension = s.dimension AND p.dimension_value = s.dimension_value AND p.metric = s.metric AND p.week_start = w.week_start
),
computed AS (
  SELECT *,
    LAG(value) OVER (PARTITION BY dimension, dimension_value, metric ORDER BY week_start) AS previous_value,
    AVG(value) OVER (PARTITION BY dimension, dimension_value, metric ORDER BY week_start ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS moving_average_4w
  FROM filled
)
SELECT
  dimension,
  dimension_value,
  metric,
  CAST(week_start AS DATE) AS week_start,
  value,
  previous_value,
  CASE WHEN previous_value = 0 THEN NULL ELSE (value - previous_value) / previous_value END AS wow_growth,
  moving_average_4w
FROM computed
WHERE week_start >= date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '{{ var("trend_weeks") * 7 }} days'
ORDER BY dimension, dimension_value, metric, week_start
