//! Progress of long steps: lines on stderr for the CLI, nothing for the
//! scheduler.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress messages.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<Say>>);

type Say = dyn Fn(&str) + Send + Sync;

impl Reporter {
    /// `prefix [elapsed]: message` lines on stderr.
    pub fn stderr(prefix: &'static str) -> Reporter {
        let started = Instant::now();
        Reporter(Some(Arc::new(move |m: &str| {
            eprintln!("{prefix} [{:>5.1}s]: {m}", started.elapsed().as_secs_f64())
        })))
    }

    pub fn silent() -> Reporter {
        Reporter(None)
    }

    pub fn say(&self, msg: impl AsRef<str>) {
        if let Some(f) = &self.0 {
            f(msg.as_ref());
        }
    }
}

/// While a long step writes `path`, report its size every second.
pub(crate) struct Watch(Option<tokio::task::JoinHandle<()>>);

impl Watch {
    pub(crate) fn file(path: &Path, what: &'static str, reporter: &Reporter) -> Watch {
        if reporter.0.is_none() {
            return Watch(None);
        }
        let (path, r) = (path.to_path_buf(), reporter.clone());
        Watch(Some(tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(m) = tokio::fs::metadata(&path).await {
                    if m.len() != last {
                        last = m.len();
                        r.say(format!("{what}: {} written so far", human(last)));
                    }
                }
            }
        })))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
