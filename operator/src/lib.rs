//! The ShardSet operator (built in the operator issue).
