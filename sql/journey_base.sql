-- One row per person: the milestones of person_milestones with advocacy, status, RFM and latest
-- NPS. customer_journey.sql adds the persona, which is computed from these columns.
WITH base AS (
  SELECT * FROM person_milestones
),
responses AS (
  SELECT * FROM stg_feedback WHERE reject_reason IS NULL
),
advocacy_acts AS (
  SELECT person_id, occurred_at AS acted_at FROM person_events WHERE is_advocacy
  UNION ALL
  SELECT customer_id, responded_at FROM responses WHERE nps_score >= {{ var('promoter_score') }}
),
advocacy AS (
  SELECT b.person_id, MIN(a.acted_at) AS advocacy_at
  FROM base b
  JOIN advocacy_acts a ON a.person_id = b.person_id AND a.acted_at >= b.purchase_at
  GROUP BY b.person_id
),
latest_nps AS (
  SELECT customer_id AS person_id, max_by(nps_score, responded_at, response_id) AS latest_nps
  FROM responses
  GROUP BY customer_id
),
buyers AS (
  SELECT
    person_id,
    DATE '{{ ds }}' - CAST(local_time(last_order_at, '{{ timezone }}') AS DATE) AS recency_days,
    orders AS frequency,
    revenue AS monetary
  FROM base
  WHERE orders > 0
),
-- NTILE(5) from each buyer's rank, by NTILE's own rule (the first count % 5 buckets hold one
-- buyer more): NTILE needs the count before its first bucket, so DataFusion buffers every buyer
-- for each of the three orders, outside its memory pool; ROW_NUMBER streams after a sort that
-- spills, so a large run stays within a small memory limit.
ranked AS (
  SELECT
    person_id,
    recency_days,
    ROW_NUMBER() OVER (ORDER BY recency_days DESC, person_id) - 1 AS r_rank,
    ROW_NUMBER() OVER (ORDER BY frequency, person_id) - 1 AS f_rank,
    ROW_NUMBER() OVER (ORDER BY monetary, person_id) - 1 AS m_rank
  FROM buyers
),
buckets AS (
  SELECT COUNT(*) / 5 AS size, COUNT(*) % 5 AS larger FROM buyers
),
rfm AS (
  SELECT
    person_id,
    recency_days,
    {%- for score in ["r", "f", "m"] %}
    CAST(CASE
      WHEN {{ score }}_rank < larger * (size + 1) THEN {{ score }}_rank / (size + 1) + 1
      ELSE larger + ({{ score }}_rank - larger * (size + 1)) / NULLIF(size, 0) + 1
    END AS BIGINT UNSIGNED) AS {{ score }}_score{{ "," if not loop.last }}
    {%- endfor %}
  FROM ranked
  CROSS JOIN buckets
),
scored AS (
  SELECT
    b.*,
    a.advocacy_at,
    r.recency_days,
    r.r_score,
    r.f_score,
    r.m_score,
    (r.f_score + r.m_score + 1) / 2 AS fm,
    n.latest_nps
  FROM base b
  LEFT JOIN advocacy a ON a.person_id = b.person_id
  LEFT JOIN rfm r ON r.person_id = b.person_id
  LEFT JOIN latest_nps n ON n.person_id = b.person_id
)
SELECT
  person_id,
  is_known,
  first_seen_at,
  last_seen_at,
  awareness_at,
  consideration_at,
  purchase_at,
  retention_at,
  advocacy_at,
  CASE
    WHEN advocacy_at IS NOT NULL THEN 'advocacy'
    WHEN retention_at IS NOT NULL THEN 'retention'
    WHEN purchase_at IS NOT NULL THEN 'purchase'
    WHEN consideration_at IS NOT NULL THEN 'consideration'
    WHEN awareness_at IS NOT NULL THEN 'awareness'
    ELSE 'none'
  END AS current_stage,
  (date_part('epoch', purchase_at) - date_part('epoch', awareness_at)) / 86400.0 AS days_to_purchase,
  orders,
  revenue,
  last_order_at,
  CASE
    WHEN orders = 0 THEN 'prospect'
    WHEN purchase_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("new_customer_days") }} days' THEN 'new'
    WHEN last_order_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("active_days") }} days' THEN 'active'
    WHEN last_order_at >= TIMESTAMP '{{ as_of }}' - INTERVAL '{{ var("at_risk_days") }} days' THEN 'at_risk'
    ELSE 'churned'
  END AS customer_status,
  recency_days,
  CASE WHEN orders > 0 THEN orders END AS frequency,
  CASE WHEN orders > 0 THEN revenue END AS monetary,
  r_score,
  f_score,
  m_score,
  CASE
    WHEN r_score IS NULL THEN NULL
    WHEN r_score >= 4 AND fm >= 4 THEN 'champions'
    WHEN r_score >= 3 AND fm >= 3 THEN 'loyal'
    WHEN r_score >= 4 AND orders = 1 THEN 'new_customers'
    WHEN r_score >= 4 THEN 'promising'
    WHEN r_score = 3 THEN 'need_attention'
    WHEN r_score <= 2 AND fm >= 3 THEN 'at_risk'
    WHEN r_score = 2 THEN 'hibernating'
    ELSE 'lost'
  END AS rfm_segment,
  latest_nps
FROM scored
