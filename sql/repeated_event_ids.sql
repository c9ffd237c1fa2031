-- Fingerprints of the event ids seen more than once among valid staged events (see
-- event_duplicates.sql). The BIGINT fingerprint, not the text: several times cheaper. Two ids
-- that share a fingerprint only add a candidate, which event_duplicates resolves on the ids
-- themselves. repeated_values sorts and merges the fingerprints instead of grouping them: a hash
-- table of as many groups as events was the slowest step per event.
SELECT unnest(repeated_values(event_key)) AS event_key
FROM stg_events
WHERE reject_reason IS NULL AND occurred_at < TIMESTAMP '{{ as_of }}'
