//! One module per command group; each parses its arguments and calls the crates.

pub(crate) mod audit;
pub(crate) mod certs;
pub(crate) mod demo;
pub(crate) mod exchange;
pub(crate) mod gateway;
pub(crate) mod idp;
pub(crate) mod init;
pub(crate) mod login;
pub(crate) mod policy;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod up;
