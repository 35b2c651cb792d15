//! The compliance kernel (work in progress).
