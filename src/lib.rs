//! portal-access: the access-control backend of a multi-portal e-learning
//! platform, served over gRPC.
//!
//! Data flows one way: `grpc` (transport) → `service` (use cases) →
//! `domain` (rules) → `store` (SQL); errors flow back as [`error::Error`].

pub mod app;
pub mod backup;
pub mod config;
pub mod domain;
pub mod error;
pub mod evidence;
pub mod grpc;
pub mod metrics;
pub mod proto;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod token;
