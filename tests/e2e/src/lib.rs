//! Helpers for tests on the kind cluster (built in the test-cluster issue).
