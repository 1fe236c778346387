//! The workspace's redis-server fixture (crate `redis-test-server`): a real `redis-server` per
//! test, on a free port, killed when dropped (even when the test fails).

#[allow(unused_imports)] // each test binary uses its own part
pub use redis_test_server::{Options, RedisServer};
