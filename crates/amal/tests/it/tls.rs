//! HTTPS served by `amal serve` itself (`AMAL_TLS_CERT`/`AMAL_TLS_KEY`):
//! the certificate is trusted, HSTS is on every response, plain HTTP is not
//! spoken on that port, and SIGHUP swaps the certificate without a restart.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// A fresh self-signed certificate for 127.0.0.1 and localhost: (cert, key).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// Replace a file atomically, as certificate renewal tools do.
fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Served {
    child: Child,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn serve_tls(dir: &Path, url: &str, cert: &Path, key: &Path) -> Served {
    let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMAL_DATA_DIR", dir)
        .env("DATABASE_URL", url)
        .env("AMAL_BIND", "127.0.0.1:0")
        .env("AMAL_TLS_CERT", cert)
        .env("AMAL_TLS_KEY", key)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send((
                        v["context"]["address"].as_str().unwrap_or("").to_string(),
                        v["context"]["scheme"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
            keep.lock().unwrap().push(line);
        }
    });
    let (addr, scheme) = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("server started")
    })
    .await
    .unwrap();
    assert_eq!(scheme, "https");
    Served { child, addr, lines }
}

fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    (tls.join("cert.pem"), tls.join("key.pem"))
}

#[tokio::test]
async fn serve_speaks_https_with_hsts_and_reloads_the_certificate_on_sighup() {
    let dir = temp_dir();
    let url = fresh_database_url(&dir).await;
    let (cert_path, key_path) = tls_files(&dir);
    let (cert1, key1) = self_signed();
    put(&cert_path, &cert1);
    put(&key_path, &key1);
    let served = serve_tls(&dir, &url, &cert_path, &key_path).await;
    let base = format!("https://{}", served.addr);

    // The health check over HTTPS, with the certificate trusted.
    let c1 = client_trusting(&cert1);
    let r = c1.get(format!("{base}/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some(HSTS)
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    // On every response, errors included.
    let r = c1
        .get(format!("{base}/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some(HSTS)
    );
    // Plain HTTP is not spoken on the HTTPS port.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{}/api/health", served.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // A client that trusts another certificate is refused.
    let (other, _) = self_signed();
    assert!(client_trusting(&other)
        .get(format!("{base}/api/health"))
        .send()
        .await
        .is_err());

    // Renewal: new files, SIGHUP, new handshakes get the new certificate on
    // the same listening socket.
    let (cert2, key2) = self_signed();
    put(&cert_path, &cert2);
    put(&key_path, &key2);
    signal(&served.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = client_trusting(&cert2)
            .get(format!("{base}/api/health"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        client_trusting(&cert1)
            .get(format!("{base}/api/health"))
            .send()
            .await
            .is_err(),
        "the old certificate is still presented"
    );

    // A broken renewal keeps the working certificate.
    put(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    signal(&served.child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("TLS certificate reload failed"))
    {
        assert!(
            Instant::now() < deadline,
            "the failed reload was not logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client_trusting(&cert2)
        .get(format!("{base}/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lines = served.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("TLS certificate reloaded")));
    assert!(!lines.iter().any(|l| l.contains("PRIVATE KEY")));

    // Graceful stop.
    let mut served = served;
    signal(&served.child, "-TERM");
    let status = served.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn tls_settings_are_checked_like_every_other_setting() {
    let dir = temp_dir();
    let (cert_path, key_path) = tls_files(&dir);
    let (cert, _) = self_signed();
    let (_, other_key) = self_signed();
    put(&cert_path, &cert);
    put(&key_path, &other_key);
    let check = |envs: &[(&str, &Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_amal"));
        c.env_clear().env("AMAL_DATA_DIR", &dir);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.args(["config", "check"]).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = check(&[("AMAL_TLS_CERT", &cert_path)]);
    assert!(!ok && text.contains("AMAL_TLS_KEY"), "{text}");
    let (ok, text) = check(&[("AMAL_TLS_CERT", &cert_path), ("AMAL_TLS_KEY", &key_path)]);
    assert!(
        !ok && text.contains("AMAL_TLS_KEY") && text.contains("does not match"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let missing = dir.join("nope.pem");
    let (ok, text) = check(&[("AMAL_TLS_CERT", &missing), ("AMAL_TLS_KEY", &key_path)]);
    assert!(!ok && text.contains("AMAL_TLS_CERT"), "{text}");
}
