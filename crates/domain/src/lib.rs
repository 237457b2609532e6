//! Pure types and rules of Dr Amal Clinical OS: no I/O, no async.
//!
//! Everything here is deterministic and unit-tested; the store and the server
//! build on these types so that a rule lives in exactly one place.

pub mod account;
pub mod allergy;
pub mod audit;
pub mod chart;
pub mod clinical;
pub mod hl7;
pub mod labs;
pub mod medication;
pub mod mrn;
pub mod notes;
pub mod roles;
pub mod states;
pub mod text;
pub mod ucum;
pub mod vitals;
