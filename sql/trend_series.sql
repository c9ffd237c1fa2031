-- Weekly series from trend_points: weeks without activity are filled with 0, then the previous
-- week, week-over-week growth and the 4-week moving average; the three earlier weeks only feed
-- those and are not shown.
WITH series AS (
  SELECT DISTINCT dimension, dimension_value, metric FROM trend_points
),
filled AS (
  SELECT s.dimension, s.dimension_value, s.metric, w.week_start, COALESCE(p.value, 0) AS value
  FROM series s
  CROSS JOIN trend_week_starts w
  LEFT JOIN trend_points p
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
