//! Generates the backwatch.v1 client and server stubs from `../../proto` without a system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["backwatch/v1/telemetry.proto"], ["../../proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
