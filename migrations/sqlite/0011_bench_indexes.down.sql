CREATE INDEX patients_search_gf ON patients(search_gf, id);
DROP INDEX patients_search_gf_fg;
