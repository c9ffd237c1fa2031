-- The customers who asked to be forgotten (the suppressions source), held as a small table: a
-- CSV has no row count, so an anti join against it shuffles every event by customer_id to meet
-- it; against a held table of known size the join copies it to every partition instead.
SELECT DISTINCT customer_id FROM suppressions WHERE customer_id IS NOT NULL
