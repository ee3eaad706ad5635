//! Checks of the `arbor` command line itself. Being an integration test of
//! the top-level package, it also makes cargo build the `arbor` binary that
//! the cluster tests in `tests/` start.

use std::process::Command;

fn arbor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arbor"))
}

#[test]
fn help_lists_every_process_kind() {
    let output = arbor().arg("--help").output().expect("run arbor --help");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["dev", "root", "coordinator", "store", "gateway"] {
        assert!(
            text.contains(command),
            "--help does not mention {command}: {text}"
        );
    }
}

#[test]
fn malformed_root_peers_fail_with_a_message_not_a_panic() {
    let output = arbor()
        .args([
            "root",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--peers",
            "oops",
            "--data",
        ])
        .arg(std::env::temp_dir().join("arbor-cli-test-unused"))
        .output()
        .expect("run arbor root");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("not id=host:port"), "stderr: {text}");
    assert!(!text.contains("panicked"), "stderr: {text}");
}
