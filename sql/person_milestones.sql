-- One row per person (every person with an event or an order): first and last activity, stage
-- milestones with implied earlier stages, order totals, and the weeks they were active in for
-- lifecycle_status. A step of its own because journey_base reads it three times and DataFusion
-- plans a CTE again at every reference; one aggregation of the events per person for both, as
-- grouping every event by person is the cost (lifecycle_status grouped them again).
-- The active weeks are a bitmask over the weeks lifecycle_status shows: bit 0 is the week before
-- the first week shown, bit i the i-th week shown (local time). A 64-bit mask holds 62 shown
-- weeks (and the one before); more fail the step, clearly:
{% if var("lifecycle_weeks") > 62 %}{{ fail("lifecycle_weeks can be at most 62 (a week bitmask, see person_milestones.sql)") }}{% endif %}
{%- set window_start -%}
  (date_trunc('week', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("lifecycle_weeks") * 7 }} days')
{%- endset %}
{%- set week_bit -%}
  CASE WHEN local_at >= {{ window_start | safe }} THEN
    CAST(1 AS BIGINT) << CAST(floor((date_part('epoch', local_at) - date_part('epoch', {{ window_start | safe }})) / 604800) AS BIGINT)
  END
{%- endset %}
WITH ev AS (
  SELECT
    person_id,
    MIN(occurred_at) AS first_event_at,
    MAX(occurred_at) AS last_event_at,
    MIN(CASE WHEN is_awareness THEN occurred_at END) AS first_awareness_at,
    MIN(CASE WHEN is_consideration THEN occurred_at END) AS first_consideration_at,
    MIN(local_at) AS first_local_at,
    bit_or({{ week_bit | safe }}) AS active_weeks
  FROM person_events
  GROUP BY person_id
),
ord AS (
  SELECT
    customer_id AS person_id,
    COUNT(*) AS orders,
    SUM(amount) AS revenue,
    MIN(ordered_at) AS purchase_at,
    second_smallest(ordered_at) AS retention_at,
    MAX(ordered_at) AS last_order_at,
    MIN(local_at) AS first_local_at,
    bit_or({{ week_bit | safe }}) AS active_weeks
  FROM completed_orders
  GROUP BY customer_id
)
SELECT
  COALESCE(ev.person_id, ord.person_id) AS person_id,
  COALESCE(ev.person_id, ord.person_id) NOT LIKE 'anon:%' AS is_known,
  LEAST(ev.first_event_at, ord.purchase_at) AS first_seen_at,
  GREATEST(ev.last_event_at, ord.last_order_at) AS last_seen_at,
  LEAST(ev.first_awareness_at, ev.first_consideration_at, ord.purchase_at) AS awareness_at,
  LEAST(ev.first_consideration_at, ord.purchase_at) AS consideration_at,
  ord.purchase_at,
  ord.retention_at,
  COALESCE(ord.orders, 0) AS orders,
  CAST(COALESCE(ord.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
  ord.last_order_at,
  LEAST(ev.first_local_at, ord.first_local_at) AS first_local_at,
  -- NULL when neither has activity in the weeks shown.
  CASE WHEN ev.active_weeks IS NOT NULL OR ord.active_weeks IS NOT NULL
    THEN COALESCE(ev.active_weeks, 0) | COALESCE(ord.active_weeks, 0) END AS active_weeks
-- The buyers first: a hash join builds on its left side, and they are half the persons.
FROM ord
FULL OUTER JOIN ev ON ev.person_id = ord.person_id
