-- The staged events this run reads: every partition up to ds, and from the late-arrival
-- partitions after it (staged_events holds those too) only the rows stamped before as_of. Their
-- bad rows without a usable timestamp belong to the ds that partition is read for, not to this one.
-- Events at or after as_of in partitions up to ds are dropped by the steps that read this one.
SELECT event_id, event_key, occurred_at, customer_id, anonymous_id, event_type, channel, reject_reason, raw
FROM staged_events
WHERE dt <= DATE '{{ ds }}' OR occurred_at < TIMESTAMP '{{ as_of }}'
