//! backwatch agent library (being built).
