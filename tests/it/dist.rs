//! What ships beside the binary: the systemd unit passes `systemd-analyze verify` and keeps
//! the hardening the README promises.

use std::process::Command;

use crate::support::*;

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = require_tool("systemd-analyze");
    let unit = std::fs::read_to_string("dist/lbns.service").unwrap();
    for line in [
        "Type=exec",
        "ExecStart=/usr/local/bin/lbns serve --config /etc/lbns/lbns.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=lbns",
        "RuntimeDirectory=lbns",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "dist/lbns.service lacks {line}"
        );
    }
    // verify also checks that ExecStart= names an executable: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("lbns.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/lbns", lbns_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warns:\n{err}"
    );
}
