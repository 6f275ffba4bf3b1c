//! `embed_migrations!` reads the migrations directory at compile time, but
//! cargo does not know it: without this, a new migration is left out of a
//! build until some Rust file of this crate changes (diesel's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
