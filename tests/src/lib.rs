//! Test harness: starts real services on free ports.
