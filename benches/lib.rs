//! Shared fixtures for entitle's benchmarks (under construction).
