//! Compiles `ldp/v1/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc`) and generates prost messages and tonic services.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["metric", "report", "collector", "analytics", "admin"]
        .map(|name| format!("ldp/v1/{name}.proto"));
    println!("cargo:rerun-if-changed=ldp");
    let fds = protox::compile(&files, ["."])?;
    // `compile_fds` ignores `file_descriptor_set_path`: write the set for
    // server reflection ourselves.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("ldp_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
