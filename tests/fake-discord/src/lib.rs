//! Fake Discord (built in the fake Discord issue).
