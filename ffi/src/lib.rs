//! The C ABI of entitle (under construction).
