-- Net Promoter Score by month of response (reporting time zone), the last nps_months months.
SELECT
  CAST(date_trunc('month', local_at) AS DATE) AS month,
  COUNT(*) AS responses,
  SUM(CASE WHEN nps_score >= 9 THEN 1 ELSE 0 END) AS promoters,
  SUM(CASE WHEN nps_score IN (7, 8) THEN 1 ELSE 0 END) AS passives,
  SUM(CASE WHEN nps_score <= 6 THEN 1 ELSE 0 END) AS detractors,
  ROUND(100.0 * (SUM(CASE WHEN nps_score >= 9 THEN 1 ELSE 0 END) - SUM(CASE WHEN nps_score <= 6 THEN 1 ELSE 0 END)) / COUNT(*), 1) AS nps
FROM stg_feedback
WHERE reject_reason IS NULL
  AND local_at >= date_trunc('month', TIMESTAMP '{{ ds }}') - INTERVAL '{{ var("nps_months") - 1 }} months'
GROUP BY date_trunc('month', local_at)
ORDER BY month
