-- The anonymous ids that events of a forgotten customer (see the suppressions source) carried:
-- their anonymous events are that customer's too, and go with them.
SELECT DISTINCT s.anonymous_id
FROM stg_events s
JOIN forgotten_customers f ON f.customer_id = s.customer_id
WHERE s.anonymous_id IS NOT NULL
