//! Where the built `vigil` binary is, for tests that run it as a user does.

use std::path::PathBuf;

/// The `vigil` binary of this build: `target/<profile>/vigil`, found from the running test
/// executable (`target/<profile>/deps/<test>-<hash>`) the way `assert_cmd`'s `cargo_bin` does.
///
/// `cargo nextest run --workspace` and `cargo test --workspace` build it; a run limited to one
/// package that is not `vigil-cli` does not, and this panics saying so.
pub fn vigil_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own executable");
    let mut dir = exe
        .parent()
        .expect("a test executable lives in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("vigil{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the vigil binary is not built at {}: run the tests with --workspace, or build it first \
         with `cargo build -p vigil-cli` (same profile and CARGO_TARGET_DIR as the tests)",
        bin.display()
    );
    bin
}
