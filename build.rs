//! Compiles the backwatch proto without a system protoc (protox) and writes the descriptor set
//! that server reflection serves.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["backwatch/v1/telemetry.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("backwatch_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
