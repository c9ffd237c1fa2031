-- Fingerprints of the event ids seen more than once among valid staged events (see
-- event_duplicates.sql). Grouped on the BIGINT fingerprint, not the text: several times cheaper.
-- Two ids that share a fingerprint only add a candidate, which event_duplicates resolves on the
-- ids themselves.
SELECT event_key FROM stg_events WHERE reject_reason IS NULL AND occurred_at < TIMESTAMP '{{ as_of }}'
GROUP BY event_key HAVING COUNT(*) > 1
