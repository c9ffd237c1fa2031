{#- Exports file events by day of arrival: an event stamped on ds can sit in a later partition. #}
{%- set last_partition -%}
  (DATE '{{ ds }}' + INTERVAL '{{ var("late_arrival_days") }} days')
{%- endset -%}
{% if events_format == 'parquet' -%}
-- Events from Parquet exports (`--var events_format=parquet`): typed columns, so only the
-- timestamp is parsed (no mart reads `properties`: event categories are not analysed, order
-- categories are). The same rules and columns as the NDJSON branch below; `raw` is the row as CSV (empty fields for nulls), for the quarantine mart.
WITH typed AS (
  SELECT *, parse_rfc3339(occurred_at) AS occurred_at_ts,
    CASE
      WHEN event_id IS NULL OR (customer_id IS NULL AND anonymous_id IS NULL) THEN 'missing_id'
      WHEN parse_rfc3339(occurred_at) IS NULL THEN 'bad_timestamp'
    END AS reject_reason
  FROM events
  WHERE dt <= {{ last_partition | safe }}
)
SELECT
  event_id, fingerprint(event_id) AS event_key, occurred_at_ts AS occurred_at, customer_id, anonymous_id, event_type, channel,
  reject_reason,
  CASE WHEN reject_reason IS NOT NULL THEN csv_record(event_id, occurred_at, customer_id, anonymous_id, event_type, channel, properties) END AS raw
FROM typed
-- Partitions after ds add only the rows stamped before as_of: late arrivals. Their bad rows
-- without a usable timestamp belong to the ds that partition is read for, not to this one.
WHERE dt <= DATE '{{ ds }}' OR occurred_at_ts < TIMESTAMP '{{ as_of }}'
{%- else -%}
-- Events parsed from NDJSON lines, up to the ds partition plus the late-arrival allowance. Events at or after as_of are dropped
-- by the steps that read this one, not here: a filter here is pushed below the projections and
-- parses each timestamp again.
-- A row breaking the contract keeps a reject_reason and its raw line; valid rows drop the line
-- (it is only needed again for duplicates, see event_duplicates.sql).
-- event_key (a 64-bit hash of event_id) makes finding duplicates cheap, see repeated_event_ids.sql.
-- json_fields parses each line once (json_get_str per field would parse it eight times); its
-- result is NULL when the line is not a JSON object.
WITH fields AS (
  SELECT
    line,
    dt,
    json_fields(line, 'event_id', 'occurred_at', 'customer_id', 'anonymous_id', 'event_type', 'channel') AS f
  FROM events
  WHERE dt <= {{ last_partition | safe }}
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
  CASE WHEN reject_reason IS NOT NULL THEN line END AS raw
FROM typed
-- Partitions after ds add only the rows stamped before as_of (see the Parquet branch). Batches
-- never mix partitions, so the timestamp is only looked at again for those few partitions.
WHERE dt <= DATE '{{ ds }}' OR occurred_at < TIMESTAMP '{{ as_of }}'
{%- endif %}
