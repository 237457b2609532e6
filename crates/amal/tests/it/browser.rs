//! The one browser harness of the web journeys: Debian's headless chromium
//! driven through chromedriver (WebDriver over plain HTTP, `fantoccini`
//! without a TLS stack), on a phone-sized or a desktop screen. Elements are
//! found by id, name and CSS only. Each journey step can leave a screenshot
//! in `$CARGO_TARGET_DIR/screenshots/` (default `target/screenshots/`),
//! named `<journey>-<sqlite|postgres>-<NN>-<step>.png`; a failed journey
//! leaves `…-failure.png` and prints the page it stopped on.

use std::cell::Cell;
use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The phone the small-screen journeys run on (CSS pixels).
pub const PHONE_WIDTH: u64 = 375;

pub type Res<T> = Result<T, fantoccini::error::CmdError>;

/// The screen a journey runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// 375 × 740, mobile emulation.
    Phone,
    /// 1280 × 1000.
    Desktop,
}

pub fn css(s: &str) -> Locator<'_> {
    Locator::Css(s)
}

/// chromedriver and one chromium session with a fresh profile; the driver
/// is stopped and the profile removed on drop.
pub struct Browser {
    pub c: Client,
    driver: std::process::Child,
    profile: PathBuf,
    shots: PathBuf,
    journey: &'static str,
    count: Cell<u32>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A free loopback port for chromedriver.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Browser {
    /// `None` (and "skipped" printed) when chromedriver is not installed,
    /// unless `AMAL_REQUIRE_BROWSER=1` makes that a failure.
    pub async fn start(journey: &'static str, screen: Screen) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            assert_ne!(
                std::env::var("AMAL_REQUIRE_BROWSER").as_deref(),
                Ok("1"),
                "AMAL_REQUIRE_BROWSER=1 but {CHROMEDRIVER} is missing (Debian packages chromium, chromium-driver)"
            );
            eprintln!("skipped: {CHROMEDRIVER} not found");
            return None;
        }
        let port = free_port();
        let driver = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = temp_dir();
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"))
            });
        let shots = target.join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut args = vec![
            json!("--headless"),
            json!("--no-sandbox"),
            json!("--disable-gpu"),
            json!("--disable-dev-shm-usage"),
            json!("--disable-background-networking"),
            json!("--disable-component-update"),
            json!("--disable-sync"),
            json!("--no-first-run"),
            json!(format!("--user-data-dir={}", profile.display())),
        ];
        let mut options = serde_json::Map::new();
        options.insert("binary".into(), json!(CHROMIUM));
        match screen {
            Screen::Phone => {
                args.push(json!("--hide-scrollbars"));
                options.insert(
                    "mobileEmulation".into(),
                    json!({ "deviceMetrics": {
                        "width": PHONE_WIDTH, "height": 740, "pixelRatio": 1.0, "mobile": true, "touch": false
                    }}),
                );
            }
            Screen::Desktop => args.push(json!("--window-size=1280,1000")),
        }
        options.insert("args".into(), Value::Array(args));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), Value::Object(options));
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let mut driver = driver;
        let c = c.unwrap_or_else(|e| {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("no chromium session (driver listening: {up}): {e}")
        });
        Some(Browser {
            c,
            driver,
            profile,
            shots,
            journey,
            count: Cell::new(0),
        })
    }

    pub async fn goto(&self, url: &str) -> Res<()> {
        self.c.goto(url).await
    }

    /// Replace the field's content with `text`.
    pub async fn fill(&self, sel: &str, text: &str) -> Res<()> {
        let e = self.c.find(css(sel)).await?;
        e.clear().await?;
        e.send_keys(text).await
    }

    pub async fn click(&self, sel: &str) -> Res<()> {
        self.c.find(css(sel)).await?.click().await
    }

    /// Click `sel` and wait until a new page has replaced this one (for
    /// steps whose next page has the same elements as this one).
    pub async fn click_and_load(&self, sel: &str) -> Res<()> {
        self.js("window.amalOldPage = true;").await?;
        self.click(sel).await?;
        for _ in 0..100 {
            // A script may fail while the page is being replaced: not yet.
            let fresh = self
                .js("return window.amalOldPage !== true && document.readyState === 'complete';")
                .await;
            if matches!(fresh, Ok(Value::Bool(true))) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no new page after clicking {sel}");
    }

    pub async fn text(&self, sel: &str) -> Res<String> {
        self.c.find(css(sel)).await?.text().await
    }

    pub async fn exists(&self, sel: &str) -> Res<bool> {
        Ok(!self.c.find_all(css(sel)).await?.is_empty())
    }

    pub async fn wait_for(&self, sel: &str) -> Res<()> {
        self.c.wait().for_element(css(sel)).await.map(|_| ())
    }

    pub async fn js(&self, script: &str) -> Res<Value> {
        self.c.execute(script, vec![]).await
    }

    /// Path and query of the current page.
    pub async fn path(&self) -> Res<String> {
        let u = self.c.current_url().await?;
        Ok(match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        })
    }

    /// The text of `sel` once `done` holds for it (the page after a form
    /// was sent may take a moment to replace the old one), else its last text.
    pub async fn text_once(&self, sel: &str, done: impl Fn(&str) -> bool) -> Res<String> {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(e) = self.c.find(css(sel)).await {
                last = e.text().await.unwrap_or_default();
                if done(&last) {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(last)
    }

    /// The page is no wider than the phone: nothing scrolls sideways.
    pub async fn fits(&self) -> Res<()> {
        let v = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await?;
        let (scroll, inner) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        let path = self.path().await?;
        assert_eq!(inner, PHONE_WIDTH, "phone viewport on {path}");
        assert!(
            scroll <= inner,
            "{path} is {scroll} px wide on a {inner} px screen"
        );
        Ok(())
    }

    /// Whether the element overlaps the visible part of the page (it may be
    /// taller than a phone's viewport).
    pub async fn in_view(&self, sel: &str) -> Res<bool> {
        let script = format!(
            "var r = document.querySelector({}).getBoundingClientRect(); \
             return r.width > 0 && r.bottom > 0 && r.right > 0 && r.top < window.innerHeight && r.left < window.innerWidth;",
            json!(sel)
        );
        Ok(self.js(&script).await? == json!(true))
    }

    pub async fn focused_id(&self) -> Res<String> {
        Ok(self
            .js("return document.activeElement ? document.activeElement.id : '';")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// How many elements matching `sel` are displayed (computed style not
    /// `display: none`), e.g. under print media.
    pub async fn shown(&self, sel: &str) -> Res<u64> {
        let script = format!(
            "return Array.from(document.querySelectorAll({})).filter(function (e) {{ \
               return e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'; \
             }}).length;",
            json!(sel)
        );
        Ok(self.js(&script).await?.as_u64().unwrap_or_default())
    }

    /// A screenshot of the current page, numbered in journey order.
    pub async fn shot(&self, step: &str) -> Res<()> {
        let png = self.c.screenshot().await?;
        let db = if is_postgres() { "postgres" } else { "sqlite" };
        self.count.set(self.count.get() + 1);
        let name = format!("{}-{db}-{:02}-{step}.png", self.journey, self.count.get());
        std::fs::write(self.shots.join(name), png).unwrap();
        Ok(())
    }

    /// Emulate print media (or the screen again) through DevTools.
    pub async fn print_media(&self, on: bool) -> Res<()> {
        let media = if on { "print" } else { "" };
        self.c
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: json!({ "media": media }),
            })
            .await
            .map(|_| ())
    }

    /// Sign in through the form.
    pub async fn sign_in(&self, app: &TestApp, email: &str, password: &str) -> Res<()> {
        self.goto(&app.url("/login")).await?;
        self.fill("#login-email", email).await?;
        self.fill("#login-password", password).await?;
        self.click("form[action='/login'] button[type=submit]")
            .await?;
        self.wait_for(".who-name").await
    }

    pub async fn sign_out(&self) -> Res<()> {
        self.click("#logout button").await?;
        self.wait_for("#login-email").await
    }

    /// End the journey: on failure leave a screenshot and print the step
    /// and page it stopped on; close the session; then fail the test.
    pub async fn finish(self, step: &Cell<&'static str>, outcome: Res<()>) {
        if outcome.is_err() {
            let url = self.path().await.unwrap_or_default();
            let src = self.c.source().await.unwrap_or_default();
            let _ = self.shot("failure").await;
            eprintln!(
                "{}: step {:?} failed at {url}:\n{}",
                self.journey,
                step.get(),
                src.get(..src.len().min(4000)).unwrap_or_default()
            );
        }
        let _ = self.c.clone().close().await;
        outcome.expect("the browser journey");
    }
}

/// Poll (the browser's clock drives the page) until `cond` holds.
pub async fn eventually<F, Fut>(what: &str, mut cond: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<bool>>,
{
    for _ in 0..300 {
        if cond().await? {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}
