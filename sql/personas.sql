-- One row per persona: size, share, mean raw features and the standardised centroid.
-- Averages are rounded to 6 decimals: a parallel aggregate adds in a varying order, and
-- the last bits of an unrounded mean would make reruns differ.
WITH members AS (
  SELECT a.persona_id, a.persona_name, f.*
  FROM persona_assignments a
  JOIN persona_features f ON f.person_id = a.person_id
),
population AS (
  SELECT
    COUNT(*) AS customers,
    AVG(recency_days) AS m_recency, stddev_pop(recency_days) AS s_recency,
    AVG(log_frequency) AS m_frequency, stddev_pop(log_frequency) AS s_frequency,
    AVG(log_monetary) AS m_monetary, stddev_pop(log_monetary) AS s_monetary,
    AVG(avg_order_value) AS m_aov, stddev_pop(avg_order_value) AS s_aov,
    AVG(log_events_90d) AS m_events, stddev_pop(log_events_90d) AS s_events
  FROM persona_features
)
SELECT
  m.persona_id,
  m.persona_name,
  COUNT(*) AS customers,
  CAST(COUNT(*) AS DOUBLE) / MAX(p.customers) AS share,
  round(AVG(m.recency_days), 6) AS mean_recency_days,
  round(AVG(m.frequency), 6) AS mean_frequency,
  round(AVG(m.monetary), 6) AS mean_monetary,
  round(AVG(m.avg_order_value), 6) AS mean_avg_order_value,
  round(AVG(m.events_90d), 6) AS mean_events_90d,
  round(COALESCE((AVG(m.recency_days) - MAX(p.m_recency)) / NULLIF(MAX(p.s_recency), 0), 0), 6) AS z_recency_days,
  round(COALESCE((AVG(m.log_frequency) - MAX(p.m_frequency)) / NULLIF(MAX(p.s_frequency), 0), 0), 6) AS z_log_frequency,
  round(COALESCE((AVG(m.log_monetary) - MAX(p.m_monetary)) / NULLIF(MAX(p.s_monetary), 0), 0), 6) AS z_log_monetary,
  round(COALESCE((AVG(m.avg_order_value) - MAX(p.m_aov)) / NULLIF(MAX(p.s_aov), 0), 0), 6) AS z_avg_order_value,
  round(COALESCE((AVG(m.log_events_90d) - MAX(p.m_events)) / NULLIF(MAX(p.s_events), 0), 0), 6) AS z_log_events_90d
FROM members m
CROSS JOIN population p
GROUP BY m.persona_id, m.persona_name
ORDER BY m.persona_id
