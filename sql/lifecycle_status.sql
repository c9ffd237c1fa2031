-- Weekly lifecycle, as in PostHog's lifecycle view: new, returning, resurrecting, dormant.
WITH weeks AS (
  SELECT value AS week_start
  FROM generate_series(
    date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ (var("lifecycle_weeks") - 1) * 7 }} days',
    date_trunc('week', TIMESTAMP '{{ ds }}'),
    INTERVAL '7 days'
  )
),
firsts AS (
  SELECT person_id, MIN(week_start) AS first_week FROM person_weeks GROUP BY person_id
),
active AS (
  SELECT
    a.week_start,
    CASE
      WHEN f.first_week = a.week_start THEN 'new'
      WHEN p.person_id IS NOT NULL THEN 'returning'
      ELSE 'resurrecting'
    END AS status
  FROM person_weeks a
  JOIN weeks w ON w.week_start = a.week_start
  JOIN firsts f ON f.person_id = a.person_id
  LEFT JOIN person_weeks p ON p.person_id = a.person_id AND p.week_start = a.week_start - INTERVAL '7 days'
),
dormant AS (
  SELECT p.week_start + INTERVAL '7 days' AS week_start, 'dormant' AS status
  FROM person_weeks p
  JOIN weeks w ON w.week_start = p.week_start + INTERVAL '7 days'
  LEFT JOIN person_weeks a ON a.person_id = p.person_id AND a.week_start = p.week_start + INTERVAL '7 days'
  WHERE a.person_id IS NULL
),
counts AS (
  SELECT week_start, status, COUNT(*) AS persons
  FROM (SELECT * FROM active UNION ALL SELECT * FROM dormant) s
  GROUP BY week_start, status
),
statuses AS (
  SELECT * FROM (VALUES ('new'), ('returning'), ('resurrecting'), ('dormant')) AS s(status)
)
SELECT CAST(w.week_start AS DATE) AS week_start, s.status, COALESCE(c.persons, 0) AS persons
FROM weeks w
CROSS JOIN statuses s
LEFT JOIN counts c ON c.week_start = w.week_start AND c.status = s.status
ORDER BY week_start, CASE s.status WHEN 'new' THEN 1 WHEN 'returning' THEN 2 WHEN 'resurrecting' THEN 3 ELSE 4 END
