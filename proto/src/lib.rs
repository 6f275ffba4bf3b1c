//! Generated code for the `ticketing.v1` contract (`proto/ticketing/v1`):
//! prost messages, tonic clients and servers, and pbjson serde impls that
//! give the canonical proto3 JSON mapping used by the REST facade.

pub mod codec;

pub mod ticketing {
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic)]
        tonic::include_proto!("ticketing.v1");
        include!(concat!(env!("OUT_DIR"), "/ticketing.v1.serde.rs"));
    }
}

pub use ticketing::v1;

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ticketing_descriptor");
