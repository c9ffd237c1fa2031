-- The marts of pipelines/customer_lifecycle.yaml written for DuckDB, as a data engineer would
-- write them by hand: the contender of benches/duckdb.sh. Same inputs, same definitions (the
-- docs/bundled-pipeline.md), same defaults; benches/tools/duckdb_marts.py fills in the
-- placeholders (a dollar sign and a name) and checks the result against lifemap's marts before
-- anything is timed.
--
-- Not here: personas (k-means is not SQL; customer_journey is compared without its persona
-- columns), trend_summary (Mann–Kendall needs a normal CDF DuckDB lacks) and the quarantine mart.
-- Duplicate event ids keep the earliest copy; lifemap breaks a tie on occurred_at by the raw
-- line, which DuckDB's JSON reader does not keep, so ties here fall by the parsed fields (the
-- sample's duplicates are exact copies, where both rules agree).

-- Local time in the reporting time zone of a UTC timestamp.
CREATE TEMP MACRO local_time(ts) AS $local_time;
CREATE TEMP MACRO month_start() AS CAST(date_trunc('month', DATE '$ds') AS DATE);
CREATE TEMP MACRO week_start() AS CAST(date_trunc('week', DATE '$ds') AS DATE);
-- Monday of the week after the last complete ISO week before as_of.
CREATE TEMP MACRO trend_end() AS CAST(date_trunc('week', DATE '$ds' + 1) AS DATE);

CREATE TEMP TABLE suppressions AS $suppressions;

-- Events up to the ds partition; a malformed line reads as a row of NULLs and fails the filters.
-- The FROM clause below is filled in per export format
-- (duckdb_marts.py --events-format: NDJSON or Parquet).
CREATE TEMP TABLE valid_events AS
WITH staged AS MATERIALIZED (
  SELECT
    event_id,
    TRY_CAST(occurred_at AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS occurred_at,
    customer_id,
    anonymous_id,
    event_type,
    channel
  FROM $events_source
  -- Partitions up to ds, and the rows stamped before as_of of the late-arrival allowance's
  -- partitions after it (exports file events by day of arrival).
  WHERE dt <= DATE '$ds'
     OR (dt <= DATE '$ds' + INTERVAL ($late_arrival_days) DAY
         AND TRY_CAST(occurred_at AS TIMESTAMPTZ) AT TIME ZONE 'UTC' < TIMESTAMP '$as_of')
),
-- Anonymous ids that a forgotten customer's events carried go with that customer.
forgotten AS (
  SELECT DISTINCT s.anonymous_id FROM staged s JOIN suppressions f ON f.customer_id = s.customer_id
  WHERE s.anonymous_id IS NOT NULL
)
SELECT * FROM staged s
WHERE event_id IS NOT NULL
  AND (customer_id IS NOT NULL OR anonymous_id IS NOT NULL)
  AND occurred_at < TIMESTAMP '$as_of'
  AND NOT EXISTS (SELECT 1 FROM suppressions f WHERE f.customer_id = s.customer_id)
  AND NOT EXISTS (SELECT 1 FROM forgotten a WHERE a.anonymous_id = s.anonymous_id)
QUALIFY row_number() OVER (
  PARTITION BY event_id ORDER BY occurred_at, customer_id, anonymous_id, event_type, channel
) = 1;

-- Identity stitching: an anonymous id belongs to the customer of its earliest event that carries both.
CREATE TEMP TABLE person_events AS
WITH links AS (
  SELECT anonymous_id, first(customer_id ORDER BY occurred_at, event_id) AS linked_customer
  FROM valid_events
  WHERE anonymous_id IS NOT NULL AND customer_id IS NOT NULL
  GROUP BY anonymous_id
)
SELECT
  e.event_id,
  e.occurred_at,
  local_time(e.occurred_at) AS local_at,
  e.channel,
  COALESCE(e.customer_id, l.linked_customer, 'anon:' || e.anonymous_id) AS person_id,
  e.customer_id IS NOT NULL OR l.linked_customer IS NOT NULL AS is_known,
  e.event_type IN ($awareness_events) AS is_awareness,
  e.event_type IN ($consideration_events) AS is_consideration,
  e.event_type IN ($advocacy_events) AS is_advocacy
FROM valid_events e
LEFT JOIN links l ON l.anonymous_id = e.anonymous_id;

DROP TABLE valid_events;

CREATE TEMP TABLE completed_orders AS
WITH typed AS (
  SELECT
    order_id,
    customer_id,
    TRY_CAST(ordered_at AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS ordered_at,
    TRY_CAST(amount AS DECIMAL(18, 2)) AS amount,
    category,
    channel,
    status
  FROM read_csv('$exports/orders/*', header = true, all_varchar = true)
)
SELECT
  order_id,
  customer_id,
  ordered_at,
  local_time(ordered_at) AS local_at,
  amount,
  category,
  channel,
  row_number() OVER (PARTITION BY customer_id ORDER BY ordered_at, order_id) AS order_number
FROM typed t
WHERE order_id IS NOT NULL
  AND customer_id IS NOT NULL
  AND ordered_at < TIMESTAMP '$as_of'
  AND amount >= 0
  AND status = 'completed'
  AND NOT EXISTS (SELECT 1 FROM suppressions f WHERE f.customer_id = t.customer_id);

CREATE TEMP TABLE responses AS
WITH typed AS (
  SELECT
    response_id,
    customer_id,
    TRY_CAST(responded_at AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS responded_at,
    -- Integers only: DuckDB would round '7.5' to 8.
    CASE WHEN regexp_full_match(nps_score, '[+-]?[0-9]+') THEN TRY_CAST(nps_score AS BIGINT) END AS nps_score
  FROM read_csv('$exports/feedback/*', header = true, all_varchar = true)
)
SELECT response_id, customer_id, responded_at, local_time(responded_at) AS local_at, nps_score
FROM typed t
WHERE response_id IS NOT NULL
  AND customer_id IS NOT NULL
  AND responded_at < TIMESTAMP '$as_of'
  AND nps_score BETWEEN 0 AND 10
  AND NOT EXISTS (SELECT 1 FROM suppressions f WHERE f.customer_id = t.customer_id);

CREATE TEMP TABLE customer_journey AS
WITH ev AS (
  SELECT
    person_id,
    min(occurred_at) AS first_event_at,
    max(occurred_at) AS last_event_at,
    min(occurred_at) FILTER (WHERE is_awareness) AS first_awareness_at,
    min(occurred_at) FILTER (WHERE is_consideration) AS first_consideration_at
  FROM person_events
  GROUP BY person_id
),
ord AS (
  SELECT
    customer_id AS person_id,
    count(*) AS orders,
    sum(amount) AS revenue,
    min(ordered_at) AS purchase_at,
    min(ordered_at) FILTER (WHERE order_number = 2) AS retention_at,
    max(ordered_at) AS last_order_at
  FROM completed_orders
  GROUP BY customer_id
),
base AS (
  SELECT
    COALESCE(ev.person_id, ord.person_id) AS person_id,
    least(ev.first_event_at, ord.purchase_at) AS first_seen_at,
    greatest(ev.last_event_at, ord.last_order_at) AS last_seen_at,
    least(ev.first_awareness_at, ev.first_consideration_at, ord.purchase_at) AS awareness_at,
    least(ev.first_consideration_at, ord.purchase_at) AS consideration_at,
    ord.purchase_at,
    ord.retention_at,
    COALESCE(ord.orders, 0) AS orders,
    CAST(COALESCE(ord.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
    ord.last_order_at
  FROM ev
  FULL OUTER JOIN ord ON ord.person_id = ev.person_id
),
advocacy AS (
  SELECT b.person_id, min(a.acted_at) AS advocacy_at
  FROM base b
  JOIN (
    SELECT person_id, occurred_at AS acted_at FROM person_events WHERE is_advocacy
    UNION ALL
    SELECT customer_id, responded_at FROM responses WHERE nps_score >= $promoter_score
  ) a ON a.person_id = b.person_id AND a.acted_at >= b.purchase_at
  GROUP BY b.person_id
),
latest_nps AS (
  SELECT customer_id AS person_id, first(nps_score ORDER BY responded_at DESC, response_id DESC) AS latest_nps
  FROM responses
  GROUP BY customer_id
),
rfm AS (
  SELECT
    person_id,
    DATE '$ds' - CAST(local_time(last_order_at) AS DATE) AS recency_days,
    ntile(5) OVER (ORDER BY DATE '$ds' - CAST(local_time(last_order_at) AS DATE) DESC, person_id) AS r_score,
    ntile(5) OVER (ORDER BY orders, person_id) AS f_score,
    ntile(5) OVER (ORDER BY revenue, person_id) AS m_score
  FROM base
  WHERE orders > 0
)
SELECT
  b.person_id,
  b.person_id NOT LIKE 'anon:%' AS is_known,
  b.first_seen_at,
  b.last_seen_at,
  b.awareness_at,
  b.consideration_at,
  b.purchase_at,
  b.retention_at,
  a.advocacy_at,
  CASE
    WHEN a.advocacy_at IS NOT NULL THEN 'advocacy'
    WHEN b.retention_at IS NOT NULL THEN 'retention'
    WHEN b.purchase_at IS NOT NULL THEN 'purchase'
    WHEN b.consideration_at IS NOT NULL THEN 'consideration'
    WHEN b.awareness_at IS NOT NULL THEN 'awareness'
    ELSE 'none'
  END AS current_stage,
  (epoch(b.purchase_at) - epoch(b.awareness_at)) / 86400.0 AS days_to_purchase,
  b.orders,
  b.revenue,
  b.last_order_at,
  CASE
    WHEN b.orders = 0 THEN 'prospect'
    WHEN b.purchase_at >= TIMESTAMP '$as_of' - INTERVAL ($new_customer_days) DAY THEN 'new'
    WHEN b.last_order_at >= TIMESTAMP '$as_of' - INTERVAL ($active_days) DAY THEN 'active'
    WHEN b.last_order_at >= TIMESTAMP '$as_of' - INTERVAL ($at_risk_days) DAY THEN 'at_risk'
    ELSE 'churned'
  END AS customer_status,
  r.recency_days,
  CASE WHEN b.orders > 0 THEN b.orders END AS frequency,
  CASE WHEN b.orders > 0 THEN b.revenue END AS monetary,
  r.r_score,
  r.f_score,
  r.m_score,
  CASE
    WHEN r.r_score IS NULL THEN NULL
    WHEN r.r_score >= 4 AND (r.f_score + r.m_score + 1) // 2 >= 4 THEN 'champions'
    WHEN r.r_score >= 3 AND (r.f_score + r.m_score + 1) // 2 >= 3 THEN 'loyal'
    WHEN r.r_score >= 4 AND b.orders = 1 THEN 'new_customers'
    WHEN r.r_score >= 4 THEN 'promising'
    WHEN r.r_score = 3 THEN 'need_attention'
    WHEN r.r_score <= 2 AND (r.f_score + r.m_score + 1) // 2 >= 3 THEN 'at_risk'
    WHEN r.r_score = 2 THEN 'hibernating'
    ELSE 'lost'
  END AS rfm_segment,
  n.latest_nps
FROM base b
LEFT JOIN advocacy a ON a.person_id = b.person_id
LEFT JOIN rfm r ON r.person_id = b.person_id
LEFT JOIN latest_nps n ON n.person_id = b.person_id;

-- Funnel: for each awareness start, the first consideration at or after it, then the first
-- purchase at or after that; both ASOF joins. A level needs them within the window of the start.
CREATE TEMP TABLE lifecycle_funnel AS
WITH starts AS (
  SELECT person_id, date_trunc('month', local_at) AS entry_month, occurred_at AS started_at, event_id, channel
  FROM person_events
  WHERE is_awareness
    AND local_at >= month_start() - INTERVAL ($funnel_months - 1) MONTH
    AND local_at < month_start() + INTERVAL 1 MONTH
),
considerations AS (SELECT person_id, occurred_at AS considered_at FROM person_events WHERE is_consideration),
purchases AS (SELECT customer_id AS person_id, ordered_at AS purchased_at FROM completed_orders),
considered AS (
  SELECT s.*, c.considered_at
  FROM starts s ASOF LEFT JOIN considerations c ON c.person_id = s.person_id AND c.considered_at >= s.started_at
),
purchased AS (
  SELECT c.*, p.purchased_at
  FROM considered c ASOF LEFT JOIN purchases p ON p.person_id = c.person_id AND p.purchased_at >= c.considered_at
),
levels AS (
  SELECT
    person_id,
    entry_month,
    first(channel ORDER BY started_at, event_id) AS channel,
    max(CASE
      WHEN considered_at IS NULL OR considered_at > started_at + INTERVAL ($conversion_window_days) DAY THEN 1
      WHEN purchased_at <= started_at + INTERVAL ($conversion_window_days) DAY THEN 3
      ELSE 2
    END) AS level
  FROM purchased
  GROUP BY person_id, entry_month
),
reached AS (
  SELECT
    l.entry_month,
    l.channel,
    l.level,
    l.level >= 3 AND j.retention_at IS NOT NULL AS retained,
    l.level >= 3 AND j.advocacy_at IS NOT NULL AS advocated
  FROM levels l
  JOIN customer_journey j ON j.person_id = l.person_id
),
totals AS (
  SELECT
    entry_month,
    CASE WHEN GROUPING(channel) = 1 THEN 'all' ELSE 'channel' END AS breakdown,
    CASE WHEN GROUPING(channel) = 1 THEN 'all' ELSE COALESCE(channel, 'unknown') END AS breakdown_value,
    count(*) AS s1,
    count(*) FILTER (WHERE level >= 2) AS s2,
    count(*) FILTER (WHERE level >= 3) AS s3,
    count(*) FILTER (WHERE retained) AS s4,
    count(*) FILTER (WHERE advocated) AS s5
  FROM reached
  GROUP BY GROUPING SETS ((entry_month), (entry_month, channel))
),
counts AS (
  SELECT t.entry_month, t.breakdown, t.breakdown_value, s.step, s.step_name, t.s1, t.s3,
    CASE s.step WHEN 1 THEN t.s1 WHEN 2 THEN t.s2 WHEN 3 THEN t.s3 WHEN 4 THEN t.s4 ELSE t.s5 END AS persons
  FROM totals t
  CROSS JOIN (VALUES (1, 'awareness'), (2, 'consideration'), (3, 'purchase'), (4, 'retention'), (5, 'advocacy')) s(step, step_name)
)
SELECT
  CAST(entry_month AS DATE) AS entry_month,
  breakdown,
  breakdown_value,
  CAST(step AS INTEGER) AS step,
  step_name,
  persons,
  -- Retention and advocacy both count from purchase.
  persons / NULLIF(CASE WHEN step = 1 THEN s1 WHEN step IN (4, 5) THEN s3 ELSE lag(persons) OVER w END, 0)
    AS conversion_from_previous,
  persons / NULLIF(s1, 0) AS conversion_from_start
FROM counts
WINDOW w AS (PARTITION BY entry_month, breakdown, breakdown_value ORDER BY step);

CREATE TEMP TABLE cohort_retention AS
WITH cohorts AS (
  SELECT person_id, CAST(date_trunc('month', local_time(purchase_at)) AS DATE) AS cohort_month
  FROM customer_journey
  WHERE purchase_at IS NOT NULL
    AND local_time(purchase_at) >= month_start() - INTERVAL ($cohort_months - 1) MONTH
),
sizes AS (SELECT cohort_month, count(*) AS cohort_size FROM cohorts GROUP BY cohort_month),
grid AS (
  SELECT s.cohort_month, s.cohort_size, p.period
  FROM sizes s
  CROSS JOIN range(0, $cohort_months) p(period)
  WHERE p.period <= datediff('month', s.cohort_month, DATE '$ds')
),
activity AS (
  SELECT
    c.cohort_month,
    datediff('month', c.cohort_month, CAST(o.local_at AS DATE)) AS period,
    count(DISTINCT o.customer_id) AS active_customers,
    sum(o.amount) AS revenue
  FROM cohorts c
  JOIN completed_orders o ON o.customer_id = c.person_id
  GROUP BY ALL
),
joined AS (
  SELECT g.cohort_month, g.period, g.cohort_size,
    COALESCE(a.active_customers, 0) AS active_customers,
    CAST(COALESCE(a.revenue, 0) AS DECIMAL(18, 2)) AS revenue
  FROM grid g
  LEFT JOIN activity a ON a.cohort_month = g.cohort_month AND a.period = g.period
)
SELECT
  cohort_month,
  CAST(period AS INTEGER) AS period,
  cohort_size,
  active_customers,
  active_customers / cohort_size AS retention_rate,
  revenue,
  CAST(sum(revenue) OVER (PARTITION BY cohort_month ORDER BY period) AS DOUBLE) / cohort_size AS cumulative_revenue_per_customer
FROM joined;

-- Weekly lifecycle from each person's active weeks and the active week before and after each.
CREATE TEMP TABLE lifecycle_status AS
WITH person_weeks AS (
  SELECT DISTINCT person_id, CAST(date_trunc('week', local_at) AS DATE) AS week_start
  FROM (
    SELECT person_id, local_at FROM person_events
    UNION ALL
    SELECT customer_id, local_at FROM completed_orders
  )
),
neighbours AS (
  SELECT
    week_start,
    lag(week_start) OVER (PARTITION BY person_id ORDER BY week_start) AS previous_week,
    lead(week_start) OVER (PARTITION BY person_id ORDER BY week_start) AS next_week
  FROM person_weeks
),
statuses AS (
  SELECT week_start,
    CASE WHEN previous_week IS NULL THEN 'new' WHEN previous_week = week_start - 7 THEN 'returning' ELSE 'resurrecting' END AS status
  FROM neighbours
  UNION ALL
  SELECT week_start + 7, 'dormant' FROM neighbours WHERE next_week IS NULL OR next_week > week_start + 7
),
weeks AS (
  SELECT week_start() - CAST(7 * w AS INTEGER) AS week_start FROM range(0, $lifecycle_weeks) t(w)
),
counts AS (
  SELECT s.week_start, s.status, count(*) AS persons
  FROM statuses s JOIN weeks w ON w.week_start = s.week_start
  GROUP BY ALL
)
SELECT w.week_start, s.status, COALESCE(c.persons, 0) AS persons
FROM weeks w
CROSS JOIN (VALUES ('new'), ('returning'), ('resurrecting'), ('dormant')) s(status)
LEFT JOIN counts c ON c.week_start = w.week_start AND c.status = s.status;

CREATE TEMP TABLE nps_monthly AS
SELECT
  CAST(date_trunc('month', local_at) AS DATE) AS month,
  count(*) AS responses,
  count(*) FILTER (WHERE nps_score >= 9) AS promoters,
  count(*) FILTER (WHERE nps_score IN (7, 8)) AS passives,
  count(*) FILTER (WHERE nps_score <= 6) AS detractors,
  round(100.0 * (count(*) FILTER (WHERE nps_score >= 9) - count(*) FILTER (WHERE nps_score <= 6)) / count(*), 1) AS nps
FROM responses
WHERE local_at >= month_start() - INTERVAL ($nps_months - 1) MONTH
GROUP BY ALL;

CREATE TEMP TABLE activity_heatmap AS
WITH recent AS (
  SELECT person_id, isodow(local_at) AS day_of_week, hour(local_at) AS hour
  FROM person_events
  WHERE occurred_at >= TIMESTAMP '$as_of' - INTERVAL ($heatmap_days) DAY
)
SELECT
  CAST(d.day_of_week AS INTEGER) AS day_of_week,
  CAST(h.hour AS INTEGER) AS hour,
  count(r.person_id) AS events,
  count(DISTINCT r.person_id) AS persons
FROM range(1, 8) d(day_of_week)
CROSS JOIN range(0, 24) h(hour)
LEFT JOIN recent r ON r.day_of_week = d.day_of_week AND r.hour = h.hour
GROUP BY ALL;

CREATE TEMP TABLE kpi_summary AS
WITH periods AS (
  SELECT * FROM (VALUES
    ('current', TIMESTAMP '$as_of' - INTERVAL ($kpi_days) DAY, TIMESTAMP '$as_of'),
    ('previous', TIMESTAMP '$as_of' - INTERVAL (2 * $kpi_days) DAY, TIMESTAMP '$as_of' - INTERVAL ($kpi_days) DAY)
  ) p(period, period_start, period_end)
),
-- Active customers are buyers: distinct customers with a completed order in the period.
order_kpis AS (
  SELECT p.period, CAST(COALESCE(sum(o.amount), 0) AS DOUBLE) AS revenue, CAST(count(o.order_id) AS DOUBLE) AS orders,
    CAST(count(DISTINCT o.customer_id) AS DOUBLE) AS active_customers
  FROM periods p
  LEFT JOIN completed_orders o ON o.ordered_at >= p.period_start AND o.ordered_at < p.period_end
  GROUP BY p.period
),
buyers AS (
  SELECT p.period, CAST(count(j.person_id) AS DOUBLE) AS new_customers, median(j.days_to_purchase) AS median_days_to_purchase
  FROM periods p
  LEFT JOIN customer_journey j ON j.purchase_at >= p.period_start AND j.purchase_at < p.period_end
  GROUP BY p.period
),
repeat AS (
  SELECT p.period,
    count(*) FILTER (WHERE o.order_number = 2) / NULLIF(count(*) FILTER (WHERE o.order_number = 1), 0) AS repeat_purchase_rate
  FROM periods p
  LEFT JOIN completed_orders o ON o.ordered_at < p.period_end
  GROUP BY p.period
),
nps AS (
  SELECT p.period,
    round(100.0 * (count(*) FILTER (WHERE r.nps_score >= 9) - count(*) FILTER (WHERE r.nps_score <= 6))
      / NULLIF(count(r.response_id), 0), 1) AS nps
  FROM periods p
  LEFT JOIN responses r ON r.responded_at >= p.period_start AND r.responded_at < p.period_end
  GROUP BY p.period
),
wide AS (
  SELECT *
  FROM order_kpis JOIN buyers USING (period) JOIN repeat USING (period) JOIN nps USING (period)
),
long AS (
  UNPIVOT wide ON revenue, orders, active_customers, new_customers, repeat_purchase_rate, nps, median_days_to_purchase
  INTO NAME metric VALUE value
)
SELECT
  metric,
  max(value) FILTER (WHERE period = 'current') AS value,
  max(value) FILTER (WHERE period = 'previous') AS previous_value,
  max(value) FILTER (WHERE period = 'current') - max(value) FILTER (WHERE period = 'previous') AS change
FROM long
GROUP BY metric;

-- Trend series over the last trend_weeks complete ISO weeks before as_of, with the three weeks
-- before them feeding the previous week and the 4-week moving average.
CREATE TEMP TABLE trend_series AS
WITH weeks AS (
  SELECT trend_end() - CAST(7 * w AS INTEGER) AS week_start FROM range(1, $trend_weeks + 4) t(w)
),
orders_weekly AS (
  SELECT category AS dimension_value, CAST(date_trunc('week', local_at) AS DATE) AS week_start,
    CAST(sum(amount) AS DOUBLE) AS revenue,
    CAST(count(*) AS DOUBLE) AS orders,
    CAST(count(DISTINCT customer_id) AS DOUBLE) AS customers
  FROM completed_orders
  WHERE category IS NOT NULL AND local_at >= trend_end() - 7 * ($trend_weeks + 3)
  GROUP BY ALL
),
events_weekly AS (
  SELECT channel AS dimension_value, CAST(date_trunc('week', local_at) AS DATE) AS week_start,
    CAST(count(*) AS DOUBLE) AS events,
    CAST(count(DISTINCT person_id) AS DOUBLE) AS persons
  FROM person_events
  WHERE channel IS NOT NULL AND local_at >= trend_end() - 7 * ($trend_weeks + 3)
  GROUP BY ALL
),
points AS (
  SELECT 'category' AS dimension, * FROM (UNPIVOT orders_weekly ON revenue, orders, customers INTO NAME metric VALUE value)
  UNION ALL BY NAME
  SELECT 'channel' AS dimension, * FROM (UNPIVOT events_weekly ON events, persons INTO NAME metric VALUE value)
),
in_range AS (SELECT p.* FROM points p JOIN weeks w USING (week_start)),
filled AS (
  SELECT s.dimension, s.dimension_value, s.metric, w.week_start, COALESCE(p.value, 0) AS value
  FROM (SELECT DISTINCT dimension, dimension_value, metric FROM in_range) s
  CROSS JOIN weeks w
  LEFT JOIN in_range p USING (dimension, dimension_value, metric, week_start)
),
computed AS (
  SELECT *,
    lag(value) OVER series AS previous_value,
    avg(value) OVER (series ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS moving_average_4w
  FROM filled
  WINDOW series AS (PARTITION BY dimension, dimension_value, metric ORDER BY week_start)
)
SELECT
  dimension, dimension_value, metric, week_start, value, previous_value,
  CASE WHEN previous_value = 0 THEN NULL ELSE (value - previous_value) / previous_value END AS wow_growth,
  moving_average_4w
FROM computed
WHERE week_start >= trend_end() - 7 * $trend_weeks;
