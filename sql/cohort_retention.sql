-- Retention and revenue by acquisition cohort (month of first completed order) and months since.
WITH cohort AS (
  SELECT person_id, date_trunc('month', local_time(purchase_at, '{{ timezone }}')) AS cohort_month
  FROM customer_journey
  WHERE purchase_at IS NOT NULL
),
in_range AS (
  SELECT * FROM cohort
  WHERE cohort_month >= date_trunc('month', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("cohort_months") - 1 }} months'
),
sizes AS (
  SELECT cohort_month, COUNT(*) AS cohort_size FROM in_range GROUP BY cohort_month
),
grid AS (
  SELECT s.cohort_month, s.cohort_size, p.value AS period
  FROM sizes s
  CROSS JOIN generate_series(0, {{ var("cohort_months") - 1 }}) p
  WHERE p.value <= (date_part('year', TIMESTAMP '{{ ds }}') - date_part('year', s.cohort_month)) * 12
                 + date_part('month', TIMESTAMP '{{ ds }}') - date_part('month', s.cohort_month)
),
activity AS (
  SELECT
    c.cohort_month,
    (date_part('year', o.local_at) - date_part('year', c.cohort_month)) * 12
      + date_part('month', o.local_at) - date_part('month', c.cohort_month) AS period,
    COUNT(DISTINCT o.customer_id) AS active_customers,
    SUM(o.amount) AS revenue
  FROM in_range c
  JOIN completed_orders o ON o.customer_id = c.person_id
  GROUP BY 1, 2
),
joined AS (
  SELECT
    g.cohort_month, g.period, g.cohort_size,
    COALESCE(a.active_customers, 0) AS active_customers,
    CAST(COALESCE(a.revenue, 0) AS DECIMAL(18, 2)) AS revenue
  FROM grid g
  LEFT JOIN activity a ON a.cohort_month = g.cohort_month AND a.period = g.period
)
SELECT
  CAST(cohort_month AS DATE) AS cohort_month,
  CAST(period AS INT) AS period,
  cohort_size,
  active_customers,
  CAST(active_customers AS DOUBLE) / cohort_size AS retention_rate,
  revenue,
  CAST(SUM(revenue) OVER (PARTITION BY cohort_month ORDER BY period) AS DOUBLE) / cohort_size AS cumulative_revenue_per_customer
FROM joined
ORDER BY cohort_month, period
