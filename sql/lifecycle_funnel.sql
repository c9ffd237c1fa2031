-- Windowed acquisition funnel by entry month (defined in docs/bundled-pipeline.md).
-- Months are taken in the reporting time zone; the window is measured on UTC instants.
{%- set first_month -%}
  (date_trunc('month', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("funnel_months") - 1 }} months')
{%- endset %}
{%- set months_end -%}
  (date_trunc('month', TIMESTAMP '{{ ds }}') + INTERVAL '1 month')
{%- endset %}
WITH touch AS (
  SELECT person_id, occurred_at AS at, local_at, awareness_event_id AS id, channel, is_awareness, is_consideration, false AS is_order
  FROM person_events
  WHERE is_awareness OR is_consideration
  UNION ALL
  SELECT customer_id, ordered_at, local_at, order_id, channel, false, false, true
  FROM completed_orders
),
-- A person's entry channel in a month: that of their first awareness touch in it.
starts AS (
  SELECT person_id, date_trunc('month', local_at) AS entry_month, min_by(channel, at, id) AS channel
  FROM touch
  WHERE is_awareness AND local_at >= {{ first_month | safe }} AND local_at < {{ months_end | safe }}
  GROUP BY person_id, date_trunc('month', local_at)
),
-- Every touch of a person in one group: window_funnel_by sweeps each entry month's funnel over
-- the same sorted touches, a month's first step being an awareness touch in that month. (Grouped
-- by person and month instead, each month needs the person's later touches: a range join of
-- every touch with every start, quadratic in a large run's touches.)
funnels AS (
  SELECT person_id, unnest(levels) AS funnel
  FROM (
    SELECT
      person_id,
      window_funnel_by(
        INTERVAL '{{ var("conversion_window_days") }} days',
        at,
        CASE WHEN is_awareness AND local_at >= {{ first_month | safe }} AND local_at < {{ months_end | safe }}
          THEN date_trunc('month', local_at) END,
        is_awareness,
        is_consideration,
        is_order
      ) AS levels
    FROM touch
    GROUP BY person_id
  ) person_funnels
),
levels AS (
  SELECT s.person_id, s.entry_month, s.channel, f.funnel['level'] AS level
  FROM funnels f
  JOIN starts s ON s.person_id = f.person_id AND s.entry_month = f.funnel['entry']
),
reached AS (
  SELECT
    l.entry_month,
    l.channel,
    l.level,
    l.level >= 3 AND j.retention_at IS NOT NULL AS retained,
    l.level >= 3 AND j.advocacy_at IS NOT NULL AS advocated
  FROM levels l
  JOIN customer_journey j ON j.person_id = l.person_id
),
-- Each person counts once overall and once under their channel. A join with the breakdown names,
-- not a union of two selects from `reached`: DataFusion plans a CTE again at every reference,
-- and `reached` holds the whole window_funnel computation.
by_breakdown AS (
  SELECT
    r.entry_month,
    b.breakdown,
    CASE WHEN b.breakdown = 'all' THEN 'all' ELSE COALESCE(r.channel, 'unknown') END AS breakdown_value,
    r.level,
    r.retained,
    r.advocated
  FROM (VALUES ('all'), ('channel')) AS b(breakdown)
  CROSS JOIN reached r
),
totals AS (
  SELECT
    entry_month, breakdown, breakdown_value,
    COUNT(*) AS s1,
    SUM(CASE WHEN level >= 2 THEN 1 ELSE 0 END) AS s2,
    SUM(CASE WHEN level >= 3 THEN 1 ELSE 0 END) AS s3,
    SUM(CASE WHEN retained THEN 1 ELSE 0 END) AS s4,
    SUM(CASE WHEN advocated THEN 1 ELSE 0 END) AS s5
  FROM by_breakdown
  GROUP BY entry_month, breakdown, breakdown_value
),
steps AS (
  SELECT * FROM (VALUES (1, 'awareness'), (2, 'consideration'), (3, 'purchase'), (4, 'retention'), (5, 'advocacy')) AS s(step, step_name)
),
counts AS (
  SELECT
    t.entry_month, t.breakdown, t.breakdown_value, s.step, s.step_name, t.s1,
    CASE s.step WHEN 1 THEN t.s1 WHEN 2 THEN t.s2 WHEN 3 THEN t.s3 WHEN 4 THEN t.s4 ELSE t.s5 END AS persons,
    -- Retention and advocacy are both shares of purchasers: advocates are not a subset of
    -- repeat buyers, so advocacy over retention could pass 100 %.
    CASE s.step WHEN 1 THEN t.s1 WHEN 2 THEN t.s1 WHEN 3 THEN t.s2 ELSE t.s3 END AS previous_persons
  FROM totals t CROSS JOIN steps s
)
SELECT
  CAST(entry_month AS DATE) AS entry_month,
  breakdown,
  breakdown_value,
  CAST(step AS INT) AS step,
  step_name,
  CAST(persons AS BIGINT) AS persons,
  CAST(persons AS DOUBLE) / NULLIF(previous_persons, 0) AS conversion_from_previous,
  CAST(persons AS DOUBLE) / NULLIF(s1, 0) AS conversion_from_start
FROM counts
ORDER BY entry_month, breakdown, breakdown_value, step
