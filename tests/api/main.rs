//! Black-box tests through gRPC: each test starts the real server on a
//! random port and calls it with the generated clients and signed tokens.
//! Test names carry the rule id they prove.

mod helpers;
mod model;
mod people;
mod previous_release;
mod process;
mod support_steps;

mod admins;
mod api_keys;
mod audit_stream;
mod audited_writes;
mod auth;
mod backup;
mod bad_input;
mod check_cache;
mod evidence;
mod faults;
mod governance;
mod health;
mod import;
mod limits;
mod outage;
mod portals;
mod races;
mod refusals;
mod rolling_upgrade;
mod security_edges;
mod stream_rights;
mod support_access;
mod support_bad_input;
mod support_races;
mod tls;
mod version;
