-- Orders typed; contract breaks keep a reason and the raw record. Rows at or after as_of are ignored.
WITH typed AS (
  SELECT *,
    parse_rfc3339(ordered_at) AS ordered_at_ts,
    TRY_CAST(amount AS DECIMAL(18, 2)) AS amount_value
  FROM orders
),
checked AS (
  SELECT *,
    CASE
      WHEN order_id IS NULL THEN 'missing_id'
      WHEN customer_id IS NULL THEN 'missing_customer'
      WHEN ordered_at_ts IS NULL THEN 'bad_timestamp'
      WHEN amount_value IS NULL OR amount_value < 0 THEN 'bad_amount'
      WHEN status IS NULL OR status NOT IN ('completed', 'refunded', 'cancelled') THEN 'unknown_status'
    END AS reject_reason
  FROM typed
  WHERE NOT EXISTS (SELECT 1 FROM forgotten_customers f WHERE f.customer_id = typed.customer_id)
    AND (ordered_at_ts IS NULL OR ordered_at_ts < TIMESTAMP '{{ as_of }}')
)
SELECT
  order_id,
  customer_id,
  ordered_at_ts AS ordered_at,
  local_time(ordered_at_ts, '{{ timezone }}') AS local_at,
  amount_value AS amount,
  currency,
  category,
  channel,
  status,
  reject_reason,
  -- Only a rejected row keeps its raw record, for the quarantine mart: the raw text of every
  -- order held in memory grew with the export.
  CASE WHEN reject_reason IS NOT NULL
    THEN csv_record(order_id, customer_id, ordered_at, amount, currency, category, channel, status)
  END AS raw
FROM checked
