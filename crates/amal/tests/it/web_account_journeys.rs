//! The account page in a real browser (Debian's chromium through
//! chromedriver; `AMAL_REQUIRE_BROWSER=1` makes a missing driver a
//! failure): two-step sign-in enrolment with the QR code drawn by the
//! server (the test computes the TOTP code from the key shown on the page,
//! as an authenticator would), sign-in asking for the code (a wrong one
//! refused, a recovery code accepted), the session list with "Sign out" on
//! another device's session, and a password change that signs the other
//! sessions out. Elements are found by id, name and text; each step leaves
//! a screenshot in `target/screenshots/account-*`. The harness is
//! `crate::browser::Browser` (the shared harness).

use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use crate::browser::{Browser, Screen};
use crate::helpers::*;
use crate::identity::{code, sign_in_as};

type Res<T> = Result<T, CmdError>;

fn css(s: &str) -> Locator<'_> {
    Locator::Css(s)
}

async fn fill(c: &Client, sel: &str, text: &str) -> Res<()> {
    let e = c.find(css(sel)).await?;
    e.clear().await?;
    e.send_keys(text).await
}

async fn click(c: &Client, sel: &str) -> Res<()> {
    c.find(css(sel)).await?.click().await
}

async fn text(c: &Client, sel: &str) -> Res<String> {
    c.wait().for_element(css(sel)).await?.text().await
}

async fn path(c: &Client) -> Res<String> {
    let u = c.current_url().await?;
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    })
}

/// The sign-in form's first step (email and password).
async fn password_step(c: &Client, app: &TestApp, email: &str, password: &str) -> Res<()> {
    c.goto(&app.url("/login")).await?;
    fill(c, "#login-email", email).await?;
    fill(c, "#login-password", password).await?;
    click(c, "form[action='/login'] button[type=submit]").await
}

/// The code step of sign-in, answered with `code`.
async fn code_step(c: &Client, code: &str) -> Res<()> {
    c.wait().for_element(css("#mfa-code")).await?;
    fill(c, "#mfa-code", code).await?;
    click(c, "form[action='/login/mfa'] button[type=submit]").await
}

/// A session opened through the API with a recovery code (the account has
/// a second factor), from a device named `agent`.
async fn api_session(app: &TestApp, u: &TestUser, agent: &str, recovery: &str) -> String {
    let r = app
        .client
        .post(app.url("/api/auth/signin"))
        .header("user-agent", agent)
        .json(&json!({"email": u.email, "password": u.password}))
        .send()
        .await
        .unwrap();
    let step = app.json_ok(r, 200).await;
    assert_eq!(step["step"], "mfa_required", "{step}");
    let r = app
        .client
        .post(app.url("/api/auth/mfa/verify"))
        .header("user-agent", agent)
        .json(&json!({"challengeToken": step["challengeToken"], "code": recovery}))
        .send()
        .await
        .unwrap();
    app.json_ok(r, 200).await["accessToken"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.get("/api/auth/me", Some(token)).await.status().as_u16()
}

#[tokio::test]
async fn web_account_journey_mfa_enrolment_sign_in_with_code_remote_sign_out_and_password_change() {
    let Some(b) = Browser::start("account", Screen::Desktop).await else {
        return;
    };
    let app = TestApp::spawn().await;
    let mut u = app.create_user("nurse").await;
    let c = b.c.clone();
    let step = std::cell::Cell::new("start");
    let outcome: Res<()> = async {
        // A second device, signed in before the factor exists.
        step.set("other device");
        let other = sign_in_as(&app, &u, "Other-Device/7.1").await;

        step.set("sign in");
        password_step(&c, &app, &u.email, &u.password).await?;
        c.wait().for_element(css(".who-name")).await?;

        step.set("enrol: QR code and key");
        c.goto(&app.url("/account")).await?;
        assert!(text(&c, "#mfa-state").await?.starts_with("Off."));
        c.find(Locator::LinkText("Set up two-step sign-in"))
            .await?
            .click()
            .await?;
        let secret = text(&c, "#mfa-secret").await?;
        let qr = c.find(css("#mfa-qr")).await?;
        let src = qr.attr("src").await?.unwrap_or_default();
        assert!(src.starts_with("data:image/svg+xml"), "{src:.60}");
        // The browser drew it: an image of the QR code's size, not a
        // broken-image icon (no request left the server for it).
        let drawn: Value = c
            .execute(
                "var i = document.getElementById('mfa-qr'); return [i.complete, i.naturalWidth];",
                vec![],
            )
            .await?;
        assert_eq!(drawn[0], true, "{drawn}");
        assert!(drawn[1].as_u64().unwrap_or(0) >= 100, "{drawn}");
        b.shot("01-mfa-setup").await?;

        step.set("enrol: a wrong code, then the right one");
        fill(&c, "#mfa-code", "000000").await?;
        click(&c, "form button[type=submit].primary").await?;
        assert!(text(&c, "#problem").await?.contains("not correct"));
        // A wrong code starts over with a new key (the old one is sealed).
        assert!(text(&c, "#mfa-new-key").await?.contains("new key"));
        let secret_again = text(&c, "#mfa-secret").await?;
        assert_ne!(secret_again, secret);
        fill(&c, "#mfa-code", &code(&secret_again, 0)).await?;
        click(&c, "form button[type=submit].primary").await?;
        c.wait().for_element(css("#recovery-codes")).await?;
        let codes: Vec<String> = {
            let mut v = vec![];
            for li in c.find_all(css("#recovery-codes li code")).await? {
                v.push(li.text().await?);
            }
            v
        };
        assert_eq!(codes.len(), 10, "{codes:?}");
        b.shot("02-recovery-codes").await?;
        c.find(Locator::LinkText("Continue")).await?.click().await?;
        c.goto(&app.url("/account")).await?;
        assert!(
            text(&c, "#mfa-state")
                .await?
                .starts_with("On. 10 recovery codes left"),
            "enrolled"
        );

        step.set("sign-in asks for the code");
        c.find(css("#logout button")).await?.click().await?;
        c.wait().for_element(css("#login-email")).await?;
        password_step(&c, &app, &u.email, &u.password).await?;
        c.wait().for_element(css("#mfa-code")).await?;
        assert!(
            c.find_all(css(".who-name")).await?.is_empty(),
            "not signed in yet"
        );
        b.shot("03-code-step").await?;
        code_step(&c, "000000").await?;
        assert!(text(&c, "#problem").await?.contains("not correct"));
        // The enrolment used this time step's code: the next one (the
        // server allows one step of clock skew).
        code_step(&c, &code(&secret_again, 1)).await?;
        c.wait().for_element(css(".who-name")).await?;

        step.set("session list: sign out the other device");
        c.goto(&app.url("/account")).await?;
        let table = text(&c, "#sessions").await?;
        assert!(table.contains("Other-Device/7.1"), "{table}");
        assert!(table.contains("this session"), "{table}");
        b.shot("04-sessions").await?;
        c.find(Locator::XPath(
            "//table[@id='sessions']//tr[contains(., 'Other-Device/7.1')]//button",
        ))
        .await?
        .click()
        .await?;
        assert_eq!(text(&c, "p.notice").await?, "The session was signed out.");
        assert!(!text(&c, "#sessions").await?.contains("Other-Device/7.1"));
        assert_eq!(
            me_status(&app, &other.access).await,
            401,
            "the other device is out"
        );
        assert_eq!(path(&c).await?, "/account?done=session_ended");

        step.set("password change");
        let tablet = api_session(&app, &u, "Tablet/3.0", &codes[0]).await;
        assert_eq!(me_status(&app, &tablet).await, 200);
        let new_password = format!("{}-changed", u.password);
        fill(&c, "#password-current", "not the current password").await?;
        fill(&c, "#password-new", &new_password).await?;
        click(&c, "form[action='/account/password'] button[type=submit]").await?;
        c.wait().for_element(css("#problem")).await?;
        assert_eq!(
            me_status(&app, &tablet).await,
            200,
            "a refused change ends nothing"
        );
        fill(&c, "#password-current", &u.password).await?;
        fill(&c, "#password-new", &new_password).await?;
        click(&c, "form[action='/account/password'] button[type=submit]").await?;
        assert!(text(&c, "p.notice").await?.starts_with("Password changed."));
        b.shot("05-password-changed").await?;
        assert_eq!(me_status(&app, &tablet).await, 401, "other sessions end");
        let old = app
            .post(
                "/api/auth/signin",
                None,
                json!({"email": u.email, "password": u.password}),
            )
            .await;
        assert_eq!(old.status(), 401, "the old password is refused");
        // This browser stays signed in; the new password (and a recovery
        // code) sign in again.
        assert!(text(&c, "#sessions").await?.contains("this session"));
        u.password = new_password;
        c.find(css("#logout button")).await?.click().await?;
        c.wait().for_element(css("#login-email")).await?;
        password_step(&c, &app, &u.email, &u.password).await?;
        code_step(&c, &codes[1]).await?;
        c.wait().for_element(css(".who-name")).await?;
        c.goto(&app.url("/account")).await?;
        assert!(text(&c, "#mfa-state")
            .await?
            .starts_with("On. 8 recovery codes left"));
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;
}
