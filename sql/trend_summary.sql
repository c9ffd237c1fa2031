-- One row per series: Sen's slope per week, the Mann–Kendall test and the trend label.
WITH indexed AS (
  SELECT *,
    (date_part('epoch', CAST(week_start AS TIMESTAMP))
      - date_part('epoch', MIN(CAST(week_start AS TIMESTAMP)) OVER ())) / 604800.0 AS week_index
  FROM trend_series
),
stats AS (
  SELECT
    dimension, dimension_value, metric,
    COUNT(*) AS weeks,
    -- Rounded: a parallel AVG adds in a varying order, and reruns must give the same bytes.
    round(AVG(value), 9) AS mean,
    sens_slope(week_index, value) AS slope,
    mann_kendall(week_index, value) AS mk
  FROM indexed
  GROUP BY dimension, dimension_value, metric
)
SELECT
  dimension,
  dimension_value,
  metric,
  weeks,
  mean,
  slope AS sens_slope,
  CASE WHEN mean = 0 THEN NULL ELSE slope / mean END AS relative_slope,
  get_field(mk, 's') AS mk_s,
  get_field(mk, 'z') AS mk_z,
  get_field(mk, 'p') AS mk_p,
  CASE
    WHEN get_field(mk, 'p') < {{ var("trend_p_value") }} AND slope > 0 THEN 'emerging'
    WHEN get_field(mk, 'p') < {{ var("trend_p_value") }} AND slope < 0 THEN 'declining'
    ELSE 'stable'
  END AS trend
FROM stats
ORDER BY dimension, dimension_value, metric
