-- Valid completed orders, numbered per customer (1 = first purchase, 2 = first repeat).
SELECT
  order_id,
  customer_id,
  ordered_at,
  local_at,
  amount,
  category,
  channel,
  ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY ordered_at, order_id) AS order_number
FROM stg_orders
WHERE reject_reason IS NULL AND status = 'completed'
