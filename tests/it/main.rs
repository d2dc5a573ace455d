//! Integration tests: lbns over real loopback sockets, in-process and as a process.

mod support;

mod cli;
mod dns;
mod fast;
mod health;
mod lbcd;
mod policy;
mod tcp;
