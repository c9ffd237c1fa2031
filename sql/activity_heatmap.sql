-- Events of the heatmap_days days before as_of by ISO day of week (1 = Monday) and hour, local time.
WITH grid AS (
  SELECT d.value AS day_of_week, h.value AS hour
  FROM generate_series(1, 7) d CROSS JOIN generate_series(0, 23) h
),
recent AS (
  SELECT
    person_id,
    CAST(date_part('isodow', local_at) AS BIGINT) AS day_of_week,
    CAST(date_part('hour', local_at) AS BIGINT) AS hour
  FROM person_events
  WHERE occurred_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("heatmap_days") }} days'
)
SELECT
  CAST(g.day_of_week AS INT) AS day_of_week,
  CAST(g.hour AS INT) AS hour,
  COUNT(r.person_id) AS events,
  COUNT(DISTINCT r.person_id) AS persons
FROM grid g
LEFT JOIN recent r ON r.day_of_week = g.day_of_week AND r.hour = g.hour
GROUP BY g.day_of_week, g.hour
ORDER BY day_of_week, hour
