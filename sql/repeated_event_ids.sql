-- Event ids seen more than once among valid staged events (see event_duplicates.sql).
SELECT event_id FROM stg_events WHERE reject_reason IS NULL AND occurred_at < TIMESTAMP '{{ as_of }}'
GROUP BY event_id HAVING COUNT(*) > 1
