-- Weekly lifecycle, as in PostHog's lifecycle view: new, returning, resurrecting, dormant.
-- Each person's first active week and the bitmask of the weeks they were active in (any valid
-- event or completed order) come from person_milestones, which groups the events by person once
-- for the journey too. No person-week joins: on a large run their build sides did not fit a
-- small memory limit (DataFusion cannot spill a hash join's build side).
{%- set window_start -%}
  (date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("lifecycle_weeks") * 7 }} days')
{%- endset %}
WITH persons AS (
  SELECT person_id, date_trunc('week', first_local_at) AS first_week, active_weeks
  FROM person_milestones
),
weeks AS (
  SELECT
    value AS week_start,
    CAST((date_part('epoch', value) - date_part('epoch', {{ window_start | safe }})) / 604800 AS BIGINT) AS bit
  FROM generate_series(
    date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ (var("lifecycle_weeks") - 1) * 7 }} days',
    date_trunc('week', TIMESTAMP '{{ ds }}'),
    INTERVAL '7 days'
  )
),
statuses AS (
  SELECT
    w.week_start,
    CASE
      WHEN (p.active_weeks >> w.bit) & 1 = 1 AND p.first_week = w.week_start THEN 'new'
      WHEN (p.active_weeks >> w.bit) & 1 = 1 AND (p.active_weeks >> (w.bit - 1)) & 1 = 1 THEN 'returning'
      WHEN (p.active_weeks >> w.bit) & 1 = 1 THEN 'resurrecting'
      WHEN (p.active_weeks >> (w.bit - 1)) & 1 = 1 THEN 'dormant'
    END AS status
  FROM weeks w
  CROSS JOIN persons p
  WHERE p.active_weeks IS NOT NULL
),
counts AS (
  SELECT week_start, status, COUNT(*) AS persons FROM statuses WHERE status IS NOT NULL GROUP BY week_start, status
),
names AS (
  SELECT * FROM (VALUES ('new', 1), ('returning', 2), ('resurrecting', 3), ('dormant', 4)) AS s(status, position)
)
SELECT CAST(w.week_start AS DATE) AS week_start, s.status, COALESCE(c.persons, 0) AS persons
FROM weeks w
CROSS JOIN names s
LEFT JOIN counts c ON c.week_start = w.week_start AND c.status = s.status
ORDER BY week_start, s.position
