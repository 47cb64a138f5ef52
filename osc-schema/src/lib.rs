//! The OSC address space of latentd as one table (filled in by the OSC issue).
//!
//! Threading: plain data and pure functions; usable from any thread.
