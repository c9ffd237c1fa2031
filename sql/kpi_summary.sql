-- Headline KPIs: the kpi_days days ending as_of against the kpi_days days before.
WITH periods AS (
  SELECT * FROM (VALUES
    ('current',  TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") }} days', TIMESTAMP '{{ as_of }}'),
    ('previous', TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") * 2 }} days', TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") }} days')
  ) AS p(period, period_start, period_end)
),
order_kpis AS (
  SELECT p.period,
    CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE) AS revenue,
    CAST(COUNT(o.order_id) AS DOUBLE) AS orders
  FROM periods p
  LEFT JOIN completed_orders o ON o.ordered_at >= p.period_start AND o.ordered_at < p.period_end
  GROUP BY p.period
),
-- Activity of the two periods is filtered first and labelled, then joined on the label: a range
-- join of every event against the periods would look at each event twice.
activity AS (
  SELECT CASE WHEN at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") }} days' THEN 'current' ELSE 'previous' END AS period,
    person_id
  FROM (
    SELECT person_id, occurred_at AS at FROM person_events WHERE is_known
    UNION ALL
    SELECT customer_id, ordered_at FROM completed_orders
  ) a
  WHERE at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") * 2 }} days' AND at < TIMESTAMP '{{ as_of }}'
),
active AS (
  SELECT p.period, CAST(COUNT(DISTINCT a.person_id) AS DOUBLE) AS active_customers
  FROM periods p
  LEFT JOIN activity a ON a.period = p.period
  GROUP BY p.period
),
buyers AS (
  SELECT p.period,
    CAST(COUNT(j.person_id) AS DOUBLE) AS new_customers,
    median(j.days_to_purchase) AS median_days_to_purchase
  FROM periods p
  LEFT JOIN customer_journey j ON j.purchase_at >= p.period_start AND j.purchase_at < p.period_end
  GROUP BY p.period
),
repeat AS (
  SELECT p.period,
    CAST(SUM(CASE WHEN o.order_number = 2 THEN 1 ELSE 0 END) AS DOUBLE)
      / NULLIF(SUM(CASE WHEN o.order_number = 1 THEN 1 ELSE 0 END), 0) AS repeat_purchase_rate
  FROM periods p
  LEFT JOIN completed_orders o ON o.ordered_at < p.period_end
  GROUP BY p.period
),
nps AS (
  SELECT p.period,
    ROUND(100.0 * (SUM(CASE WHEN f.nps_score >= 9 THEN 1 ELSE 0 END) - SUM(CASE WHEN f.nps_score <= 6 THEN 1 ELSE 0 END))
      / NULLIF(COUNT(f.response_id), 0), 1) AS nps
  FROM periods p
  LEFT JOIN stg_feedback f ON f.reject_reason IS NULL AND f.responded_at >= p.period_start AND f.responded_at < p.period_end
  GROUP BY p.period
),
wide AS (
  SELECT o.period, o.revenue, o.orders, a.active_customers, b.new_customers, r.repeat_purchase_rate, n.nps, b.median_days_to_purchase
  FROM order_kpis o
  JOIN active a ON a.period = o.period
  JOIN buyers b ON b.period = o.period
  JOIN repeat r ON r.period = o.period
  JOIN nps n ON n.period = o.period
),
long AS (
  SELECT period, 1 AS position, 'revenue' AS metric, revenue AS value FROM wide
  UNION ALL SELECT period, 2, 'orders', orders FROM wide
  UNION ALL SELECT period, 3, 'active_customers', active_customers FROM wide
  UNION ALL SELECT period, 4, 'new_customers', new_customers FROM wide
  UNION ALL SELECT period, 5, 'repeat_purchase_rate', repeat_purchase_rate FROM wide
  UNION ALL SELECT period, 6, 'nps', nps FROM wide
  UNION ALL SELECT period, 7, 'median_days_to_purchase', median_days_to_purchase FROM wide
)
SELECT
  c.metric,
  c.value,
  p.value AS previous_value,
  c.value - p.value AS change
FROM long c
JOIN long p ON p.metric = c.metric AND p.period = 'previous'
WHERE c.period = 'current'
ORDER BY c.position
