//! The fake Discord's rules, over real WebSockets with a client of our own that can break them.

mod client;
mod commands;
mod events;
mod faults;
mod fixture;
mod history;

mod identify;
mod lifecycle;
mod rest;
mod resume;
