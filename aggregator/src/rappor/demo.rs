//! The RAPPOR demo (work in progress).
