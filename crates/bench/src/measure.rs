//! Measuring a server process under load, for amal and the Helios peer
//! alike: one workload's outcome as table rows with the process's CPU and
//! memory, and stopping the process.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::load::{self, Group, Outcome, Probe, Target};

/// Patients W1 picks from at random (the Helios peer reads as many).
pub(crate) const W1_IDS: usize = 2_000;

/// How each workload is run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Concurrent clients.
    pub(crate) clients: usize,
    /// Seconds before measuring, and measured.
    pub(crate) warmup: u64,
    pub(crate) duration: u64,
}

/// SIGTERM, up to 30 s to exit cleanly, then SIGKILL; always reaped.
pub(crate) fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// utime + stime of a process in seconds, and its peak and current RSS in
/// bytes (Linux /proc).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name in parentheses; utime is field 14.
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub(crate) fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct CpuProbe {
    pid: u32,
    at_start: f64,
    used: f64,
}

impl Probe for CpuProbe {
    fn start(&mut self) {
        self.at_start = proc_cpu_seconds(self.pid);
    }
    fn stop(&mut self) {
        self.used = proc_cpu_seconds(self.pid) - self.at_start;
    }
}

/// One printed row.
pub(crate) struct Row {
    pub(crate) engine: String,
    pub(crate) workload: String,
    pub(crate) label: &'static str,
    pub(crate) clients: usize,
    pub(crate) requests: u64,
    pub(crate) per_sec: f64,
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) errors: String,
    pub(crate) cpu_per_1k: f64,
    pub(crate) rss_mib: f64,
    pub(crate) load: String,
}

impl Row {
    /// No names, no numbers (the peak-RSS row fills in only a few).
    pub(crate) fn empty() -> Row {
        Row {
            engine: String::new(),
            workload: String::new(),
            label: "",
            clients: 0,
            requests: 0,
            per_sec: 0.0,
            p50: 0.0,
            p95: 0.0,
            p99: 0.0,
            max: 0.0,
            errors: String::new(),
            cpu_per_1k: 0.0,
            rss_mib: 0.0,
            load: String::new(),
        }
    }
}

/// Run one workload against the server `pid` serves and turn its outcome
/// into rows (one per request label), CPU sampled around the measured window.
pub(crate) async fn measured(
    plan: &Plan,
    engine: &str,
    name: &str,
    t: &Target,
    groups: &[Group],
    pid: u32,
) -> anyhow::Result<Vec<Row>> {
    let load = loadavg();
    eprintln!("  {engine} {name} (load average {load})");
    let mut probe = CpuProbe {
        pid,
        at_start: 0.0,
        used: 0.0,
    };
    let out: Outcome = load::run(t, groups, plan.warmup, plan.duration, &mut probe).await?;
    let total = out.requests();
    let cpu_per_1k = if total > 0 {
        probe.used * 1000.0 / total as f64
    } else {
        0.0
    };
    let rss = proc_kib(pid, "VmRSS:") as f64 / 1024.0;
    let clients: usize = groups.iter().map(|g| g.clients).sum();
    let mut rows = Vec::new();
    for (label, s) in &out.labels {
        let ms = |q: f64| s.hist.value_at_quantile(q) as f64 / 1000.0;
        let row = Row {
            engine: engine.to_string(),
            workload: name.to_string(),
            label,
            clients,
            requests: s.requests(),
            per_sec: s.hist.len() as f64 / out.seconds,
            p50: ms(0.5),
            p95: ms(0.95),
            p99: ms(0.99),
            max: s.hist.max() as f64 / 1000.0,
            errors: s
                .errors
                .iter()
                .map(|(k, v)| format!("{v}×{k}"))
                .collect::<Vec<_>>()
                .join(" "),
            cpu_per_1k,
            rss_mib: rss,
            load: load.clone(),
        };
        eprintln!("    {}", line(&row));
        rows.push(row);
    }
    Ok(rows)
}

pub(crate) fn line(r: &Row) -> String {
    format!(
        "{:<8} {} [{}] {:.0}/s p50 {:.2} p95 {:.2} p99 {:.2} max {:.2} ms errors [{}] cpu {:.3}s/1k rss {:.0} MiB",
        r.engine,
        r.workload,
        r.label,
        r.per_sec,
        r.p50,
        r.p95,
        r.p99,
        r.max,
        r.errors,
        r.cpu_per_1k,
        r.rss_mib
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(proc_cpu_seconds(pid) > 0.0);
        assert!(proc_kib(pid, "VmHWM:") > 0);
    }
}
