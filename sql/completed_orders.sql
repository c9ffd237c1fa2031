-- Valid completed orders. Not numbered per customer: a customer's first and second order times
-- are MIN and second_smallest of ordered_at (person_milestones), where ROW_NUMBER() sorted every
-- order by customer for them.
SELECT
  order_id,
  customer_id,
  ordered_at,
  local_at,
  amount,
  category,
  channel
FROM stg_orders
WHERE reject_reason IS NULL AND status = 'completed'
