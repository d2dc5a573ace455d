//! Probes: how lbns learns whether a backend is up and how loaded it is.

pub mod lbcd;
