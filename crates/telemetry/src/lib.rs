//! What `amal` tells its operators about itself: counters, gauges and
//! request-duration histograms ([`metrics`]), one JSON object per log line
//! ([`logging`]), and the pure alert engine that evaluates rules over metric
//! samples ([`alerts`]; `server::alert_task` drives it), and which build is
//! running ([`build`]).
//!
//! This crate depends on no other crate of the workspace, so it cannot see
//! a patient, a database row or the application state: whatever reaches a
//! metric name or a log field was handed over as a plain value by a caller.

pub mod alerts;
pub mod build;
pub mod logging;
pub mod metrics;
pub mod num;
