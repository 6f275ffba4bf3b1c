use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "ticketing/v1/common.proto",
    "ticketing/v1/auth.proto",
    "ticketing/v1/catalog.proto",
    "ticketing/v1/orders.proto",
    "ticketing/v1/payments.proto",
    "ticketing/v1/checkin.proto",
    "ticketing/v1/reports.proto",
    "ticketing/v1/waiting_room.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("ticketing_descriptor.bin");

    // Well-known types come from pbjson-types so Timestamp gets its RFC 3339
    // JSON form in the facade.
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .generate_default_stubs(true)
        .codec_path("crate::codec::ContractCodec")
        .build_transport(false)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(PROTOS, &["."])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.emit_fields().build(&[".ticketing"])?;

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
