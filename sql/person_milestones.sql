-- One row per person (every person with an event or an order): first and last activity, stage
-- milestones with implied earlier stages, and order totals. A step of its own because
-- journey_base reads it three times and DataFusion plans a CTE again at every reference.
WITH ev AS (
  SELECT
    person_id,
    MIN(occurred_at) AS first_event_at,
    MAX(occurred_at) AS last_event_at,
    MIN(CASE WHEN is_awareness THEN occurred_at END) AS first_awareness_at,
    MIN(CASE WHEN is_consideration THEN occurred_at END) AS first_consideration_at
  FROM person_events
  GROUP BY person_id
),
ord AS (
  SELECT
    customer_id AS person_id,
    COUNT(*) AS orders,
    SUM(amount) AS revenue,
    MIN(ordered_at) AS purchase_at,
    MIN(CASE WHEN order_number = 2 THEN ordered_at END) AS retention_at,
    MAX(ordered_at) AS last_order_at
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
  ord.last_order_at
FROM ev
FULL OUTER JOIN ord ON ord.person_id = ev.person_id
