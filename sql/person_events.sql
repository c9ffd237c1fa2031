-- Events with the person they belong to (identity stitching) and their lifecycle stage.
-- link(anonymous_id) = the customer_id of the earliest event (by occurred_at, then event_id)
-- carrying both that anonymous_id and a customer_id.
-- Only what later steps read: the event type as the stage flags, and the event id only where the
-- funnel reads it (to break ties between a person's first awareness events of a month). At 100M
-- events the table is held partly on disk and scanned by nine steps, so every column costs, and
-- the ids are its widest column.
WITH links AS (
  SELECT anonymous_id, min_by(customer_id, occurred_at, event_id) AS linked_customer
  FROM valid_events
  WHERE anonymous_id IS NOT NULL AND customer_id IS NOT NULL
  GROUP BY anonymous_id
)
-- Events of a customer need no link: only anonymous events go through the join.
SELECT
  CASE WHEN e.event_type IN ({{ var('awareness_events') | sql_list }}) THEN e.event_id END AS awareness_event_id,
  e.occurred_at,
  local_time(e.occurred_at, '{{ timezone }}') AS local_at,
  e.channel,
  e.customer_id AS person_id,
  true AS is_known,
  e.event_type IN ({{ var('awareness_events') | sql_list }}) AS is_awareness,
  e.event_type IN ({{ var('consideration_events') | sql_list }}) AS is_consideration,
  e.event_type IN ({{ var('advocacy_events') | sql_list }}) AS is_advocacy
FROM valid_events e
WHERE e.customer_id IS NOT NULL
UNION ALL
SELECT
  CASE WHEN e.event_type IN ({{ var('awareness_events') | sql_list }}) THEN e.event_id END,
  e.occurred_at,
  local_time(e.occurred_at, '{{ timezone }}'),
  e.channel,
  COALESCE(l.linked_customer, 'anon:' || e.anonymous_id),
  l.linked_customer IS NOT NULL,
  e.event_type IN ({{ var('awareness_events') | sql_list }}),
  e.event_type IN ({{ var('consideration_events') | sql_list }}),
  e.event_type IN ({{ var('advocacy_events') | sql_list }})
-- Written as links RIGHT JOIN events so that the hash table is built on the links, not on the
-- (several times more) anonymous events.
FROM links l
RIGHT JOIN valid_events e ON l.anonymous_id = e.anonymous_id
WHERE e.customer_id IS NULL
