-- Every event row of the exports, parsed and checked once per `dt` partition and kept between
-- runs (an incremental step by partition of `events`: see the pipeline). Nothing here may depend
-- on the run's date: stg_events.sql picks the rows a run keeps.
-- A row breaking the contract keeps a reject_reason and its raw record; valid rows drop it (it
-- is only needed again for duplicates, see event_duplicates.sql).
-- event_key (a 64-bit hash of event_id) makes finding duplicates cheap, see repeated_event_ids.sql.
{% if events_format == 'parquet' -%}
-- Events from Parquet exports (`--var events_format=parquet`): typed columns, so only the
-- timestamp is parsed (no mart reads `properties`: event categories are not analysed, order
-- categories are). `raw` is the row as CSV (empty fields for nulls), for the quarantine mart.
WITH typed AS (
  SELECT *, parse_rfc3339(occurred_at) AS occurred_at_ts,
    CASE
      WHEN event_id IS NULL OR (customer_id IS NULL AND anonymous_id IS NULL) THEN 'missing_id'
      WHEN parse_rfc3339(occurred_at) IS NULL THEN 'bad_timestamp'
    END AS reject_reason
  FROM events
)
SELECT
  event_id, fingerprint(event_id) AS event_key, occurred_at_ts AS occurred_at, customer_id, anonymous_id, event_type, channel,
  reject_reason,
  CASE WHEN reject_reason IS NOT NULL THEN csv_record(event_id, occurred_at, customer_id, anonymous_id, event_type, channel, properties) END AS raw,
  dt
FROM typed
{%- else -%}
-- Events parsed from NDJSON lines. json_fields parses each line once (json_get_str per field
-- would parse it eight times); its result is NULL when the line is not a JSON object.
WITH fields AS (
  SELECT
    line,
    dt,
    json_fields(line, 'event_id', 'occurred_at', 'customer_id', 'anonymous_id', 'event_type', 'channel') AS f
  FROM events
),
parsed AS (
  SELECT
    line,
    dt,
    f IS NULL                    AS malformed,
    f['event_id']                AS event_id,
    f['occurred_at']             AS occurred_at_raw,
    f['customer_id']             AS customer_id,
    f['anonymous_id']            AS anonymous_id,
    f['event_type']              AS event_type,
    f['channel']                 AS channel
  FROM fields
),
typed AS (
  SELECT *, parse_rfc3339(occurred_at_raw) AS occurred_at,
    CASE
      WHEN malformed THEN 'malformed'
      WHEN event_id IS NULL OR (customer_id IS NULL AND anonymous_id IS NULL) THEN 'missing_id'
      WHEN parse_rfc3339(occurred_at_raw) IS NULL THEN 'bad_timestamp'
    END AS reject_reason
  FROM parsed
)
SELECT
  event_id, fingerprint(event_id) AS event_key, occurred_at, customer_id, anonymous_id, event_type, channel, reject_reason,
  CASE WHEN reject_reason IS NOT NULL THEN line END AS raw,
  dt
FROM typed
{%- endif %}
