//! Compiles psrpc's envelope with prost. LiveKit's own messages come ready-made from the
//! `livekit-protocol` crate, so only the envelope (which no crate ships) is generated here.
fn main() {
    println!("cargo:rerun-if-changed=protos");
    let mut config = prost_build::Config::new();
    // Deterministic map order keeps golden-vector tests byte-exact.
    config.btree_map(["."]);
    if let Err(e) = config.compile_protos(&["protos/psrpc_internal.proto"], &["protos"]) {
        // protoc missing is the usual cause; say how to get it rather than a bare panic trace.
        eprintln!(
            "error: compiling protos failed: {e}\nhint: install protoc (`apt-get install protobuf-compiler`) or set PROTOC"
        );
        std::process::exit(1);
    }
}
