//! Browser journeys of a clinic's first day (issue 13), in headless
//! Chromium through chromedriver on a 375 px wide phone screen: first-run
//! setup from an empty database to a signed-in admin; invite, sign-up page
//! and sign-in; idle logoff (warning, "stay signed in", sign-out, and the
//! refresh refused by the server); no page wider than the screen, the
//! critical flag on screen, a form error and an AI refusal in view with the
//! focus on them, and the print stylesheet hiding forms. Screenshots of each
//! step go to `target/screenshots/`.

use fantoccini::Locator;
use serde_json::json;

use crate::browser::{eventually, Browser, Res, Screen};
use crate::helpers::*;

#[tokio::test]
async fn web_journey_first_run_setup_invite_sign_up_and_sign_in_on_a_phone() {
    let app = TestApp::spawn().await;
    let code = app
        .state
        .first_run
        .code()
        .expect("an empty database arms the first run");
    let Some(b) = Browser::start("first-run", Screen::Phone).await else {
        return;
    };
    let step = std::cell::Cell::new("start");
    let admin_email = "founder@clinic.test";
    let admin_pw = "a long first password";
    let nurse_email = "nurse.new@clinic.test";
    let nurse_pw = "nurse password long";
    let outcome: Res<()> = async {
        step.set("the sign-in page says where the setup link is");
        b.goto(&app.url("/login")).await?;
        assert!(b.text(".hint").await?.contains("setup link"));
        b.fits().await?;
        b.shot("login-first-run").await?;

        step.set("a wrong code is the HTML 404 page");
        b.goto(&app.url("/setup?code=wrong")).await?;
        assert!(b.text("h1").await?.contains("Not found"));

        step.set("setup with a short password: the message is in view, focused");
        b.goto(&server::first_run::setup_url(&app.base, &code))
            .await?;
        b.fits().await?;
        b.shot("setup").await?;
        b.fill("#signup-name", "Dr Founder").await?;
        b.fill("#signup-email", admin_email).await?;
        // Below the 12-character rule; the browser's own check is lifted
        // so the server's message is what is shown.
        b.js("document.getElementById('signup-password').removeAttribute('minlength');")
            .await?;
        b.fill("#signup-password", "short").await?;
        b.click("form[action='/setup'] button[type=submit]").await?;
        b.wait_for("#problem").await?;
        assert!(b.in_view("#problem").await?, "form error in view");
        assert_eq!(b.focused_id().await?, "problem");
        assert!(b.text("#problem").await?.contains("Password"));
        b.shot("setup-error").await?;

        step.set("setup creates the admin and signs them in");
        b.fill("#signup-password", admin_pw).await?;
        b.click("form[action='/setup'] button[type=submit]").await?;
        b.wait_for(".who-name").await?;
        assert_eq!(b.text(".who-name").await?, "Dr Founder");
        assert!(b.path().await?.starts_with("/admin/users"));
        assert!(b.text(".notice").await?.contains("administrator"));
        b.fits().await?;
        b.shot("admin-signed-in").await?;

        step.set("the setup link is dead");
        assert!(app.state.first_run.code().is_none());

        step.set("invite a nurse; the code and link are shown after a redirect");
        b.c.find(Locator::Css("#invite-role"))
            .await?
            .select_by_value("nurse")
            .await?;
        b.click("form[action='/admin/invites'] button[type=submit]")
            .await?;
        b.wait_for("#invite-link").await?;
        assert!(b.path().await?.starts_with("/admin/users?done=invite"));
        let link = b.text("#invite-link").await?;
        assert!(link.starts_with("/signup?code="), "{link}");
        b.fits().await?;
        b.shot("invite").await?;
        step.set("a reload creates no second invitation and shows no code");
        b.c.refresh().await?;
        b.wait_for("#invites").await?;
        assert!(b.c.find(Locator::Css("#invite-link")).await.is_err());
        let rows = b
            .js("return document.querySelectorAll('#invites tbody tr').length;")
            .await?;
        assert_eq!(rows, json!(1), "one pending invitation");
        b.sign_out().await?;

        step.set("the sign-in page links the sign-up page");
        b.c.find(Locator::LinkText("Create your account"))
            .await?
            .click()
            .await?;
        b.wait_for("#signup-inviteCode").await?;

        step.set("the invitation link opens the sign-up page with the code");
        b.goto(&app.url(&link)).await?;
        b.wait_for("#signup-inviteCode").await?;
        b.fits().await?;
        b.fill("#signup-name", "Nina Nurse").await?;
        b.fill("#signup-email", nurse_email).await?;
        b.fill("#signup-password", nurse_pw).await?;
        b.shot("signup").await?;
        b.click("form[action='/signup'] button[type=submit]")
            .await?;
        b.wait_for(".who-name").await?;
        assert_eq!(b.text(".who-name").await?, "Nina Nurse");
        assert_eq!(b.text(".who .role").await?, "nurse");
        b.fits().await?;
        b.shot("nurse-day").await?;
        b.sign_out().await?;

        step.set("the nurse signs in again; the used code is refused");
        b.sign_in(&app, nurse_email, nurse_pw).await?;
        b.sign_out().await?;
        b.goto(&app.url(&link)).await?;
        b.fill("#signup-name", "Someone Else").await?;
        b.fill("#signup-email", "other@clinic.test").await?;
        b.fill("#signup-password", "another long password").await?;
        b.click("form[action='/signup'] button[type=submit]")
            .await?;
        b.wait_for("#problem").await?;
        assert!(b.text("#problem").await?.contains("not valid"));
        assert!(b.in_view("#problem").await?);
        b.fits().await?;
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;

    // The audit trail has the first admin and the sign-up.
    let actions: Vec<String> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"user.create".to_string()));
    assert!(actions.contains(&"invite.create".to_string()));
    assert!(actions.contains(&"auth.signup".to_string()));
}

#[tokio::test]
async fn web_journey_idle_logoff_warns_then_clears_the_screen_and_the_server_refuses_the_refresh() {
    let app = TestApp::spawn_with(|r| r.idle_timeout = Some("6s".into())).await;
    let api = app.signed_in("provider").await;
    let patient = app
        .create_patient(&api.access, "Idelle", "Timeoutova")
        .await;
    let pid = sid(&patient);
    let user = app.create_user("provider").await;
    let Some(b) = Browser::start("idle", Screen::Phone).await else {
        return;
    };
    let step = std::cell::Cell::new("start");
    let refresh = std::cell::RefCell::new(String::new());
    let outcome: Res<()> = async {
        step.set("sign in and open a chart");
        b.sign_in(&app, &user.email, &user.password).await?;
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        b.wait_for(".banner h1").await?;
        b.fits().await?;

        step.set("the warning appears with a countdown; stay signed in");
        let warned = || async {
            b.c.find(Locator::Css("#idle-warning"))
                .await?
                .is_displayed()
                .await
        };
        eventually("the inactivity warning", warned).await?;
        assert!(b.in_view("#idle-warning").await?);
        let left: u64 = b.text("#idle-count").await?.parse().unwrap();
        assert!((1..=3).contains(&left), "counts down from the lead: {left}");
        assert_eq!(b.focused_id().await?, "idle-stay");
        b.shot("warning").await?;
        b.click("#idle-stay").await?;
        let hidden = || async {
            Ok(!b
                .c
                .find(Locator::Css("#idle-warning"))
                .await?
                .is_displayed()
                .await?)
        };
        eventually("the warning hides", hidden).await?;
        assert!(
            b.path().await?.starts_with("/patients/"),
            "still on the chart"
        );

        step.set("this time nobody answers: signed out, the screen cleared");
        let cookies = b.c.get_all_cookies().await?;
        *refresh.borrow_mut() = cookies
            .iter()
            .find(|c| c.name() == "amal_refresh")
            .map(|c| c.value().to_string())
            .expect("the refresh cookie");
        eventually("the warning again", warned).await?;
        let gone = || async { Ok(b.path().await?.starts_with("/login")) };
        eventually("the sign-in page", gone).await?;
        b.wait_for("#login-email").await?;
        assert_eq!(b.path().await?, "/login?done=idle");
        assert!(b.text(".notice").await?.contains("inactivity"));
        let src = b.c.source().await?;
        assert!(
            !src.contains("Timeoutova"),
            "no patient data left on screen"
        );
        b.shot("signed-out").await?;

        step.set("the chart now asks to sign in");
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        b.wait_for("#login-email").await?;
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;

    // Server side: the refresh token the browser held is refused.
    let r = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refreshToken": refresh.borrow().clone() }),
        )
        .await;
    assert_eq!(r.status().as_u16(), 401);
}

/// HTTP level: a refresh after the idle limit fails and ends the session;
/// requests inside the limit keep it alive.
#[tokio::test]
async fn web_idle_limit_is_enforced_by_the_server_for_access_and_refresh_tokens() {
    let app = TestApp::spawn_with(|r| r.idle_timeout = Some("4s".into())).await;
    let s = app.signed_in("nurse").await;
    // Activity inside the limit keeps the session alive (well inside: the
    // requests come every half second against a 4 s limit).
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 200);
    }
    // Idle past the limit: the access token's session is over…
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    assert_eq!(app.get("/api/auth/me", Some(&s.access)).await.status(), 401);
    // …and so is the refresh token, for good.
    let r = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refreshToken": s.refresh }),
        )
        .await;
    assert_eq!(r.status().as_u16(), 401);
    let idle: Vec<_> = audit_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "auth.refresh" && e.outcome == "idle_timeout")
        .collect();
    assert_eq!(idle.len(), 1, "the idle end is audited once");
    assert_eq!(idle[0].actor_id, Some(s.user_id));
}

#[tokio::test]

async fn web_journey_phone_chart_keeps_flags_visible_errors_in_view_and_prints_without_forms() {
    let app = TestApp::spawn().await;
    let api = app.signed_in("provider").await;
    let patient = app
        .create_patient(&api.access, "Phonella", "Narrowscreen")
        .await;
    let pid = sid(&patient);
    // A critical potassium and two earlier results for a trend.
    for (value, at) in [
        (4.1, "2026-01-05T08:00:00Z"),
        (5.4, "2026-02-05T08:00:00Z"),
        (7.2, "2026-03-05T08:00:00Z"),
    ] {
        let r = app
            .post(
                &format!("/api/patients/{pid}/labs"),
                Some(&api.access),
                json!({"code": "2823-3", "name": "Potassium", "value": value, "unit": "mmol/L", "collectedAt": at}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    }
    let user = app.create_user("provider").await;
    let Some(b) = Browser::start("phone", Screen::Phone).await else {
        return;
    };
    let step = std::cell::Cell::new("start");
    let outcome: Res<()> = async {
        step.set("sign in");
        b.sign_in(&app, &user.email, &user.password).await?;
        b.fits().await?;
        b.shot("day").await?;

        step.set("the chart: no sideways scroll, CRITICAL on screen");
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        b.wait_for(".banner h1").await?;
        b.fits().await?;
        let flag = ".flag-critical";
        b.js(&format!(
            "document.querySelector({}).scrollIntoView({{block: 'center'}});",
            json!(flag)
        ))
        .await?;
        assert!(b.in_view(flag).await?, "the critical flag is on screen");
        b.shot("chart").await?;

        for page in ["labs", "vitals", "notes", "prescriptions", "notes/new"] {
            step.set("every chart page fits the phone");
            b.goto(&app.url(&format!("/patients/{pid}/{page}"))).await?;
            b.wait_for(".banner").await?;
            b.fits().await?;
        }
        step.set("the trend fits the phone");
        b.goto(&app.url(&format!("/patients/{pid}/labs/trend?code=2823-3")))
            .await?;
        b.wait_for(".banner").await?;
        b.fits().await?;
        b.shot("trend").await?;
        b.goto(&app.url("/patients")).await?;
        b.fits().await?;
        b.goto(&app.url("/no/such/page")).await?;
        assert!(b.text("h1").await?.contains("Not found"));
        b.fits().await?;

        step.set("a refused form: the message is in view with the focus");
        b.goto(&app.url(&format!("/patients/{pid}/vitals"))).await?;
        b.js("document.querySelectorAll('form [required]').forEach(function (e) { e.removeAttribute('required'); }); \
              document.querySelectorAll('form input[type=number]').forEach(function (e) { e.type = 'text'; });")
            .await?;
        let systolic = "form input[name=systolic]";
        b.fill(systolic, "900").await?;
        b.c.find(Locator::Css(systolic))
            .await?
            .send_keys("\u{E007}")
            .await?;
        b.wait_for("#problem").await?;
        assert!(b.in_view("#problem").await?, "form error in view");
        assert_eq!(b.focused_id().await?, "problem");
        b.fits().await?;
        b.shot("form-error").await?;

        step.set("an AI refusal: in view, with the focus");
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        b.fill("form[action$='/ai/draft'] textarea", "Tell me a joke about cats")
            .await?;
        b.click("form[action$='/ai/draft'] button[type=submit]")
            .await?;
        b.wait_for("#problem").await?;
        assert!(b
            .c
            .source()
            .await?
            .contains("The assistant declined this request."));
        assert!(b.in_view("#problem").await?, "AI refusal in view");
        assert_eq!(b.focused_id().await?, "problem");
        b.fits().await?;
        b.shot("ai-refusal").await?;

        step.set("printing hides every form");
        b.goto(&app.url(&format!("/patients/{pid}"))).await?;
        b.wait_for(".banner").await?;
        b.print_media(true).await?;
        let shown = b
            .js("return Array.from(document.querySelectorAll('form')).filter(function (f) { return getComputedStyle(f).display !== 'none'; }).length;")
            .await?;
        assert_eq!(shown, json!(0), "no form is printed");
        let nav = b
            .js("return getComputedStyle(document.querySelector('header.top')).display;")
            .await?;
        assert_eq!(nav, json!("none"));
        b.shot("chart-print").await?;
        b.print_media(false).await?;
        Ok(())
    }
    .await;
    b.finish(&step, outcome).await;
}
