//! Embeds Redoc's standalone bundle (pinned in docs/package.json, installed
//! by `ci/lib.sh` `ensure_npm_packages facade/docs`) for `GET /docs`. Without
//! it the build still works and /docs says what is missing.

use std::{env, fs, path::PathBuf};

fn main() -> std::io::Result<()> {
    let docs = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("docs");
    let bundles = docs.join("node_modules/redoc/bundles");
    let bundle = bundles.join("redoc.standalone.js");
    let embedded = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("redoc.standalone.js");
    if bundle.exists() {
        fs::copy(&bundle, &embedded)?;
        println!("cargo:rerun-if-changed={}", bundles.display());
    } else {
        fs::write(&embedded, b"")?;
        // Installing it creates docs/node_modules, which changes docs/.
        println!("cargo:rerun-if-changed={}", docs.display());
    }
    Ok(())
}
