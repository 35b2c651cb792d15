//! Full-text search (work in progress).
