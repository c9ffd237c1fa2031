-- Weekly lifecycle, as in PostHog's lifecycle view: new, returning, resurrecting, dormant.
-- One pass over the activity (any valid event or completed order), grouped by person: the week
-- of their first activity ever, and a bitmask of the weeks they were active in: bit 0 is the week
-- before the first week shown, bit i the i-th week shown. No person-week joins: at 100M events
-- their build sides did not fit a 4 GiB limit (DataFusion cannot spill a hash join's build side).
-- A 64-bit mask holds 62 shown weeks (and the one before); more fail the step, clearly:
{% if var("lifecycle_weeks") > 62 %}{{ fail("lifecycle_weeks can be at most 62 (a week bitmask, see lifecycle_status.sql)") }}{% endif %}
{%- set window_start -%}
  (date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("lifecycle_weeks") * 7 }} days')
{%- endset %}
WITH activity AS (
  SELECT person_id, local_at FROM person_events
  UNION ALL
  SELECT customer_id, local_at FROM completed_orders
),
persons AS (
  SELECT
    person_id,
    date_trunc('week', MIN(local_at)) AS first_week,
    bit_or(
      CASE WHEN local_at >= {{ window_start | safe }} THEN
        CAST(1 AS BIGINT) << CAST(floor((date_part('epoch', local_at) - date_part('epoch', {{ window_start | safe }})) / 604800) AS BIGINT)
      END
    ) AS active_weeks
  FROM activity
  GROUP BY person_id
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
