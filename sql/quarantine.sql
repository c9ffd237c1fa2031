SELECT 'events' AS source, line AS raw, reject_reason AS reason, DATE '{{ ds }}' AS ds
FROM stg_events WHERE reject_reason IS NOT NULL
UNION ALL
SELECT 'orders', raw, reject_reason, DATE '{{ ds }}'
FROM stg_orders WHERE reject_reason IS NOT NULL
ORDER BY source, raw
