//! Tests of the lab itself; they need root and run for real.

mod cleanup;
mod db;
mod net;
