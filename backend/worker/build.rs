//! Generates the gRPC code from proto/ with protox (a Rust protobuf compiler: no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = protox::compile(["orrery/worker/v1/worker.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(files)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
