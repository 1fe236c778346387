//! Helpers shared by the integration tests: real processes, cleaned up on drop.
#![allow(dead_code)]

pub mod bus;
pub mod collector;
pub mod cutter;
pub mod lag;
pub mod metrics;
pub mod redis;
pub mod roles;
pub mod scenario;
pub mod worker;
