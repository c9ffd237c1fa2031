-- One row per person: journey_base with the persona of each buyer.
SELECT b.*, p.persona_id, p.persona_name
FROM journey_base b
LEFT JOIN persona_assignments p ON p.person_id = b.person_id
ORDER BY b.person_id
