SELECT
  CAST(date_trunc('month', ordered_at) AS DATE) AS month,
  category,
  COUNT(*) AS orders,
  SUM(amount) AS revenue,
  COUNT(DISTINCT customer_id) AS customers
FROM stg_orders
WHERE reject_reason IS NULL AND status = 'completed'
GROUP BY 1, 2
ORDER BY 1, 2
