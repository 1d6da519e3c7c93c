//! Runs a process to its end while sampling its peak resident memory (VmHWM) every 10 ms:
//! what the memory bounds of ingestion are measured with. A process still running after the
//! hang guard is killed and the test fails: a guard against hangs, not a timing assertion.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How a measured process ended.
pub struct Measured {
    /// It exited with success.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its peak resident set (VmHWM), in KB.
    pub peak_kb: u64,
}

impl Measured {
    /// The peak in MB.
    pub fn peak_mb(&self) -> u64 {
        self.peak_kb >> 10
    }
}

/// The peak resident set of process `pid` so far, in KB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs `cmd` to its end, sampling its peak memory; kills it and panics after `guard`.
pub async fn run_measured(mut cmd: tokio::process::Command, guard: Duration) -> Measured {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the process");
    let pid = child.id().expect("a running child has a pid");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = tokio::spawn(async move {
        let mut s = String::new();
        out.read_to_string(&mut s).await.map(|_| s)
    });
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        err.read_to_string(&mut s).await.map(|_| s)
    });
    let started = Instant::now();
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > guard {
            child.kill().await.unwrap();
            panic!(
                "the process still ran after {guard:?} (peak {} MB)",
                peak_kb >> 10
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(peak_kb > 0, "the peak memory was never read");
    Measured {
        ok: status.success(),
        stdout: stdout.await.unwrap().unwrap(),
        stderr: stderr.await.unwrap().unwrap(),
        peak_kb,
    }
}
