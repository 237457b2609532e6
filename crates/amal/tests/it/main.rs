//! The integration suite: black-box tests against the real server. Run on
//! SQLite by default and on PostgreSQL with `AMAL_TEST_DATABASE_URL`.
// Tests may panic and truncate: a panic there is a failed test, not a fault.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod access;
mod admin;
mod ai;
mod alerts;
mod audit;
mod auth;
mod backup;
mod browser;
mod cli;
mod clinical;
mod encryption;
mod faults;
mod fhir;
mod fhir_demo_export;
mod fhir_group;
mod fhir_vitals;
mod helpers;
mod hl7;
mod identity;
mod input;
mod integrity;
mod medication;
mod mllp;
mod ratelimit;
mod signing;
mod smoke;
mod tls;
mod web;
mod web_account_journeys;
mod web_clinical_journeys;
mod web_journeys;
mod web_worklist;
mod worklist;
