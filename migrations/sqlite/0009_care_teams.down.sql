DROP TABLE account_reviews;
DROP TABLE break_glass;
DROP TABLE care_team_patients;
DROP TABLE care_team_members;
DROP TABLE care_teams;
