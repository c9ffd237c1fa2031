SELECT
  order_id,
  customer_id,
  TRY_CAST(ordered_at AS TIMESTAMP) AS ordered_at,
  TRY_CAST(amount AS DECIMAL(18, 2)) AS amount,
  currency,
  category,
  channel,
  status,
  CASE
    WHEN order_id IS NULL THEN 'missing_id'
    WHEN customer_id IS NULL THEN 'missing_customer'
    WHEN TRY_CAST(ordered_at AS TIMESTAMP) IS NULL THEN 'bad_timestamp'
    WHEN TRY_CAST(amount AS DECIMAL(18, 2)) IS NULL OR TRY_CAST(amount AS DECIMAL(18, 2)) < 0 THEN 'bad_amount'
    WHEN status NOT IN ('completed', 'refunded', 'cancelled') THEN 'unknown_status'
  END AS reject_reason,
  concat_ws(',', order_id, customer_id, ordered_at, amount, currency, category, channel, status) AS raw
FROM orders
WHERE TRY_CAST(ordered_at AS TIMESTAMP) IS NULL OR TRY_CAST(ordered_at AS TIMESTAMP) < TIMESTAMP '{{ as_of }}'
