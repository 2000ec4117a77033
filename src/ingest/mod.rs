//! Ingest: parse exports into message rows (to be written).
