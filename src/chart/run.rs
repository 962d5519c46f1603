//! Charts of a run (filled in below).
