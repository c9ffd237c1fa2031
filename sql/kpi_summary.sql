-- Headline KPIs: the kpi_days days ending as_of against the kpi_days days before.
WITH periods AS (
  SELECT * FROM (VALUES
    ('current',  TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") }} days', TIMESTAMP '{{ as_of }}'),
    ('previous', TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") * 2 }} days', TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("kpi_days") }} days')
  ) AS p(period, period_start, period_end)
),
-- active_customers: distinct customers with a completed order in the period (as in
-- cohort_retention), not every person who merely browsed.
order_kpis AS (
  SELECT p.period,
    CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE) AS revenue,
    CAST(COUNT(o.order_id) AS DOUBLE) AS orders,
    CAST(COUNT(DISTINCT o.customer_id) AS DOUBLE) AS active_customers
  FROM periods p
  LEFT JOIN completed_orders o ON o.ordered_at >= p.period_start AND o.ordered_at < p.period_end
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
-- Customers whose second completed order (retention_at) came before the period's end, over those
-- whose first did.
repeat AS (
  SELECT p.period,
    CAST(COUNT(CASE WHEN j.retention_at < p.period_end THEN 1 END) AS DOUBLE)
      / NULLIF(COUNT(j.person_id), 0) AS repeat_purchase_rate
  FROM periods p
  LEFT JOIN customer_journey j ON j.purchase_at < p.period_end
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
  SELECT o.period, o.revenue, o.orders, o.active_customers, b.new_customers, r.repeat_purchase_rate, n.nps, b.median_days_to_purchase
  FROM order_kpis o
  JOIN buyers b ON b.period = o.period
  JOIN repeat r ON r.period = o.period
  JOIN nps n ON n.period = o.period
),
-- Metrics become rows by a join with their names, not by a union of one select per metric: a CTE
-- is planned again wherever it is referenced, so the union computed `wide` fourteen times.
metrics AS (
  SELECT * FROM (VALUES
    (1, 'revenue'), (2, 'orders'), (3, 'active_customers'), (4, 'new_customers'),
    (5, 'repeat_purchase_rate'), (6, 'nps'), (7, 'median_days_to_purchase')
  ) AS m(position, metric)
),
long AS (
  SELECT w.period, m.position, m.metric,
    CASE m.metric
      WHEN 'revenue' THEN w.revenue
      WHEN 'orders' THEN w.orders
      WHEN 'active_customers' THEN w.active_customers
      WHEN 'new_customers' THEN w.new_customers
      WHEN 'repeat_purchase_rate' THEN w.repeat_purchase_rate
      WHEN 'nps' THEN w.nps
      ELSE w.median_days_to_purchase
    END AS value
  FROM wide w CROSS JOIN metrics m
),
paired AS (
  SELECT position, metric,
    MAX(CASE WHEN period = 'current' THEN value END) AS value,
    MAX(CASE WHEN period = 'previous' THEN value END) AS previous_value
  FROM long
  GROUP BY position, metric
)
SELECT metric, value, previous_value, value - previous_value AS change
FROM paired
ORDER BY position
