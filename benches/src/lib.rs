//! Criterion suites of the hot paths live here (SPEC H-4); none are written yet.
