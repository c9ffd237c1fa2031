-- The ISO weeks trend mapping looks at: the last trend_weeks complete weeks before as_of, and the
-- three before them (for the previous week and the 4-week moving average of the first ones).
SELECT value AS week_start
FROM generate_series(
  date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '{{ (var("trend_weeks") + 3) * 7 }} days',
  date_trunc('week', TIMESTAMP '{{ ds }}' + INTERVAL '1 day') - INTERVAL '7 days',
  INTERVAL '7 days'
)
