-- Name-prefix search (issue 9, W2): the "given family" key also carries the
-- "family given" sort key, so the search's second range scan is answered
-- from the index alone (no table row per match) and sorted by it.
CREATE INDEX patients_search_gf_fg ON patients(search_gf, search_fg, id);
DROP INDEX patients_search_gf;
