SELECT
  customer_id,
  parse_rfc3339(signup_at) AS signup_at,
  country,
  acquisition_channel,
  CASE
    WHEN customer_id IS NULL THEN 'missing_id'
    WHEN parse_rfc3339(signup_at) IS NULL THEN 'bad_timestamp'
  END AS reject_reason,
  -- The email is dropped at ingestion (pii: drop), so the raw record shown in quarantine lacks it.
  csv_record(customer_id, signup_at, country, acquisition_channel) AS raw
FROM customers c
WHERE NOT EXISTS (SELECT 1 FROM forgotten_customers f WHERE f.customer_id = c.customer_id)
