//! Load generator (to be written).
fn main() {}
