//! The webhooks page under `/portal/`, against the real binary: sign-in links and sessions,
//! CSRF, account scoping and headers over plain HTTP; then every flow of the spec in a
//! headless Chromium (skipped with a reason when no browser is installed, except under CI).

mod browser;
mod common;

use browser::Browser;
use common::*;
use hallway_webhooks::signature;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A session as a plain HTTP client holds it.
struct Signed {
    cookie: String,
    csrf: String,
}

/// Asks for a sign-in link as the admin; returns its path (`/portal/login/...`).
async fn link(server: &Server, acc: &str) -> String {
    let (status, v) = server
        .admin(
            "POST",
            &format!("/v1/accounts/{acc}/portal-sessions"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "portal session: {v}");
    assert_keys(&v, &["url", "expires_at"]);
    assert_ts(&v["expires_at"]);
    let url = v["url"].as_str().expect("url");
    let base = format!("http://{}", server.addr);
    url.strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url} is not under {base}"))
        .to_owned()
}

fn header(a: &Answer, name: &str) -> String {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    page[start..].split('"').next().expect("a value").to_owned()
}

/// Signs in through a fresh link and reads the CSRF token from the list page.
async fn sign_in(server: &Server, acc: &str) -> Signed {
    let path = link(server, acc).await;
    let a = server.http.send_with("GET", &path, &[], None).await;
    assert_eq!(a.status, 303, "{}", text(&a));
    let set = header(&a, "set-cookie");
    let cookie = set.split(';').next().expect("name=value").to_owned();
    let page = get(server, &cookie, "/portal/").await;
    assert_eq!(page.status, 200, "{}", text(&page));
    Signed {
        csrf: csrf_of(&text(&page)),
        cookie,
    }
}

async fn get(server: &Server, cookie: &str, path: &str) -> Answer {
    server
        .http
        .send_with("GET", path, &[("cookie", cookie)], None)
        .await
}

async fn post_form(server: &Server, cookie: &str, path: &str, form: &[(&str, &str)]) -> Answer {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    server
        .http
        .send_with(
            "POST",
            path,
            &[
                ("cookie", cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(body.into_bytes()),
        )
        .await
}

#[tokio::test]
async fn a_link_opens_one_session_with_a_safe_cookie() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    let (_, key) = server.create_account("acc_a", "Acme Research", "pro").await;

    // Admin only: an account key, no token, an unknown account.
    let route = "/v1/accounts/acc_a/portal-sessions";
    let own = server
        .call("POST", route, Some(&key), Some(json!({})))
        .await;
    assert_error(&own, 403, "forbidden");
    let none = server.call("POST", route, None, Some(json!({}))).await;
    assert_error(&none, 401, "unauthorized");
    let missing = server
        .admin(
            "POST",
            "/v1/accounts/acc_zz/portal-sessions",
            Some(json!({})),
        )
        .await;
    assert_error(&missing, 404, "not_found");

    let path = link(&server, "acc_a").await;
    let token = path.rsplit('/').next().expect("token");
    assert_eq!(token.len(), 64, "256 random bits as hex");
    let first = server.http.send_with("GET", &path, &[], None).await;
    assert_eq!(first.status, 303);
    assert_eq!(header(&first, "location"), "/portal/");
    let set = header(&first, "set-cookie");
    for part in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/portal",
        "Max-Age=43200",
    ] {
        assert!(set.contains(part), "{part} missing from {set}");
    }
    assert!(!set.contains(token), "the cookie is not the link's token");

    let again = server.http.send_with("GET", &path, &[], None).await;
    assert_eq!(again.status, 410, "a link works once");
    assert!(header(&again, "set-cookie").is_empty());

    let cookie = set.split(';').next().expect("cookie").to_owned();
    let page = get(&server, &cookie, "/portal/").await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(text(&page).contains("Acme Research"));
    let anonymous = server.http.send_with("GET", "/portal/", &[], None).await;
    assert_eq!(anonymous.status, 401);

    // Sign out ends the session and clears the cookie.
    let csrf = csrf_of(&text(&page));
    let out = post_form(&server, &cookie, "/portal/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.status, 200);
    assert!(header(&out, "set-cookie").contains("Max-Age=0"));
    assert_eq!(get(&server, &cookie, "/portal/").await.status, 401);
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let home = Home::new();
    let server = Server::permissive(&home, &["--portal-link-ttl", "300ms"]).await;
    server.create_account("acc_a", "Acme", "pro").await;
    let path = link(&server, "acc_a").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = server.http.send_with("GET", &path, &[], None).await;
    assert_eq!(a.status, 410, "{}", text(&a));
    assert!(text(&a).contains("expired or was already used"));
    let unknown = server
        .http
        .send_with("GET", "/portal/login/0000", &[], None)
        .await;
    assert_eq!(unknown.status, 410);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_a", "Acme", "pro").await;
    let rx = Receiver::status(200).await;
    let s = sign_in(&server, "acc_a").await;
    let url = rx.url();
    let fields = [
        ("name", "Hook"),
        ("url", url.as_str()),
        ("events", EVENT_TYPE),
    ];
    let without = post_form(&server, &s.cookie, "/portal/webhooks", &fields).await;
    assert_eq!(without.status, 403);
    let mut wrong = fields.to_vec();
    wrong.push(("_csrf", "not-the-token"));
    let wrong = post_form(&server, &s.cookie, "/portal/webhooks", &wrong).await;
    assert_eq!(wrong.status, 403);
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_a/webhooks", None)
        .await;
    assert_eq!(list["data"], json!([]), "nothing was created");

    // Script requests may carry the token as a header instead.
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let by_header = server
        .http
        .send_with(
            "POST",
            "/portal/webhooks",
            &[
                ("cookie", s.cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-csrf-token", s.csrf.as_str()),
            ],
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(by_header.status, 303, "{}", text(&by_header));
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_a/webhooks", None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    server
        .admin(
            "DELETE",
            &format!(
                "/v1/accounts/acc_a/webhooks/{}",
                list["data"][0]["id"].as_str().unwrap_or("")
            ),
            None,
        )
        .await;

    let mut good = fields.to_vec();
    good.push(("_csrf", &s.csrf));
    let created = post_form(&server, &s.cookie, "/portal/webhooks", &good).await;
    assert_eq!(created.status, 303, "{}", text(&created));
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_a/webhooks", None)
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    // The secret is shown on the next view only.
    let first = text(&get(&server, &s.cookie, "/portal/").await);
    assert!(first.contains("whsec_"), "the secret is shown once");
    let second = text(&get(&server, &s.cookie, "/portal/").await);
    assert!(!second.contains("whsec_"), "and never again");
}

#[tokio::test]
async fn a_refused_create_says_why_on_the_page() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_free", "Free Co", "free").await;
    let s = sign_in(&server, "acc_free").await;
    let form = [
        ("_csrf", s.csrf.as_str()),
        ("name", "Hook"),
        ("url", "https://example.com/hook"),
        ("events", EVENT_TYPE),
    ];
    let a = post_form(&server, &s.cookie, "/portal/webhooks", &form).await;
    assert_eq!(a.status, 422);
    let page = text(&a);
    assert!(page.contains("Webhooks require the Pro plan"), "{page}");
    assert!(page.contains("Pro plan only"), "{page}");
}

#[tokio::test]
async fn another_accounts_webhook_is_not_found() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    server.create_account("acc_a", "Acme", "pro").await;
    server.create_account("acc_b", "Other", "pro").await;
    let rx = Receiver::status(200).await;
    let (theirs, _) = server.create_webhook("acc_b", "Theirs", &rx.url()).await;
    let wh = theirs["id"].as_str().expect("id");
    let s = sign_in(&server, "acc_a").await;
    for path in [
        format!("/portal/webhooks/{wh}/edit"),
        format!("/portal/webhooks/{wh}/deliveries"),
        format!("/portal/webhooks/{wh}/rotate"),
        format!("/portal/webhooks/{wh}/deliveries/dlv_x"),
    ] {
        assert_eq!(get(&server, &s.cookie, &path).await.status, 404, "{path}");
    }
    let delete = post_form(
        &server,
        &s.cookie,
        &format!("/portal/webhooks/{wh}/delete"),
        &[("_csrf", &s.csrf)],
    )
    .await;
    assert_eq!(delete.status, 404);
    let test = post_form(
        &server,
        &s.cookie,
        &format!("/portal/webhooks/{wh}/test"),
        &[("_csrf", &s.csrf)],
    )
    .await;
    assert_eq!(test.status, 404);
    server.webhook("acc_b", wh).await;
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn the_page_cannot_be_framed_unless_allowed() {
    let home = Home::new();
    let server = Server::permissive(&home, &[]).await;
    let a = server.http.send_with("GET", "/portal/", &[], None).await;
    let csp = header(&a, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&a, "x-frame-options"), "DENY");
    let js = server
        .http
        .send_with("GET", "/portal/assets/portal.js", &[], None)
        .await;
    assert_eq!(js.status, 200);
    assert!(js.content_type.starts_with("text/javascript"));
    drop(server);

    let home = Home::new();
    let server = Server::permissive(
        &home,
        &[
            "--portal-frame-ancestors",
            "https://app.example.com",
            "--allow-http",
        ],
    )
    .await;
    server.create_account("acc_a", "Acme", "pro").await;
    let path = link(&server, "acc_a").await;
    let a = server.http.send_with("GET", &path, &[], None).await;
    let csp = header(&a, "content-security-policy");
    assert!(
        csp.ends_with("frame-ancestors https://app.example.com"),
        "{csp}"
    );
    assert!(header(&a, "x-frame-options").is_empty());
    let set = header(&a, "set-cookie");
    assert!(set.contains("SameSite=None"), "{set}");
    assert!(!set.contains("Secure"), "--allow-http: {set}");
}

#[tokio::test]
async fn portal_link_prints_a_link_from_the_running_server() {
    let home = Home::new();
    let server = Server::start_with(&home, None, &[]).await;
    let token = std::fs::read_to_string(home.data_dir().join("admin-token")).expect("token");
    let server = Server {
        token: token.trim().to_owned(),
        ..server
    };
    server.create_account("acc_a", "Acme", "pro").await;
    let addr = server.addr.to_string();
    let data_dir = arg(&home.data_dir());
    let (code, out, err) = run_cli(
        &[
            "portal-link",
            "acc_a",
            "--server",
            &addr,
            "--data-dir",
            &data_dir,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let url = out.trim();
    let path = url
        .strip_prefix(&format!("http://{addr}"))
        .unwrap_or_else(|| panic!("{url}"));
    let a = server.http.send_with("GET", path, &[], None).await;
    assert_eq!(a.status, 303);
    let (code, _, err) = run_cli(
        &[
            "portal-link",
            "acc_zz",
            "--server",
            &addr,
            "--data-dir",
            &data_dir,
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// In a browser.

/// Verifies a received request's signature with `secret`.
fn signed_by(r: &Received, secret: &str) -> bool {
    signature::verify(secret, &r.signature, &r.body, now_secs(), 300).is_ok()
}

async fn open_menu_item(b: &Browser, wh: &str, text: &str) {
    b.click(&format!("li#{wh} details.menu > summary")).await;
    let item = b
        .client
        .find(fantoccini::Locator::XPath(&format!(
            "//li[@id='{wh}']//ul[contains(@class,'menu-items')]//*[self::a or self::button][normalize-space()='{text}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("menu item {text}: {e}"));
    item.click().await.expect("click menu item");
}

#[tokio::test]
async fn every_flow_of_the_page_in_a_browser() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let started = Instant::now();
    let home = Home::new();
    let server = Server::permissive(&home, &["--retry-delays", "0s,200ms"]).await;
    server.create_account("acc_a", "Acme Research", "pro").await;
    let rx = Receiver::status(200).await;
    let base = format!("http://{}", server.addr);

    // Link → list.
    b.goto(&format!("{base}{}", link(&server, "acc_a").await))
        .await;
    b.wait_text("h1", "Webhooks").await;
    assert_eq!(b.path().await, "/portal/");
    b.shot("01-list-empty").await;

    // Add: the dialog, an inline error, then the secret shown once.
    b.click("a[data-dialog='add-webhook']").await;
    assert_eq!(
        b.find("#add-webhook")
            .await
            .prop("open")
            .await
            .expect("prop"),
        Some("true".into())
    );
    let focused = b.client.active_element().await.expect("focus");
    assert_eq!(
        focused.attr("id").await.expect("id"),
        Some("add-name".into())
    );
    // Escape closes the dialog and gives focus back to the button that opened it.
    focused.send_keys("\u{E00C}").await.expect("Escape");
    assert_ne!(
        b.find("#add-webhook")
            .await
            .prop("open")
            .await
            .expect("prop"),
        Some("true".into())
    );
    let back = b.client.active_element().await.expect("focus");
    assert_eq!(
        back.attr("data-dialog").await.expect("attr"),
        Some("add-webhook".into())
    );
    back.send_keys("\u{E007}")
        .await
        .expect("Enter opens it again");
    b.wait_text("#add-title", "Add Webhook").await;
    b.fill("#add-name", "Local receiver").await;
    b.fill("#add-url", "http://localhost:9/hook").await;
    b.shot("02-add-dialog").await;
    b.click("#add-webhook button[type='submit']").await;
    let error = b.wait_text("#add-url-error", "https://").await;
    assert_eq!(error, "Must use https://");
    b.shot("03-add-inline-error").await;
    b.fill("#add-url", &rx.url()).await;
    b.fill("#add-description", "Verifies and logs").await;
    b.click("#add-webhook button[type='submit']").await;
    let secret_box = b.find("#secret-value").await;
    let secret = secret_box
        .prop("value")
        .await
        .expect("value")
        .expect("a secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    b.wait_text(".secret .warn", "It will only be shown once")
        .await;
    b.shot("04-secret-shown-once").await;
    let (_, list) = server
        .admin("GET", "/v1/accounts/acc_a/webhooks", None)
        .await;
    let wh = list["data"][0]["id"].as_str().expect("id").to_owned();
    b.client.refresh().await.expect("reload");
    b.wait_text("h1", "Webhooks").await;
    assert!(
        !b.has("#secret-value").await,
        "a reload never shows the secret again"
    );
    assert!(!b.client.source().await.expect("source").contains(&secret));

    // The three-dots menu opens with its actions and closes with Escape.
    b.click(&format!("li#{wh} details.menu > summary")).await;
    b.wait_text(&format!("li#{wh} .menu-items"), "Rotate secret")
        .await;
    b.shot("05-menu-open").await;
    let focused = b.client.active_element().await.expect("focus");
    focused.send_keys("\u{E00C}").await.expect("Escape");
    assert!(!b.has("details.menu[open]").await, "Escape closes the menu");

    // Send test: the receiver gets `_test: true`, the page shows the result when it arrives.
    open_menu_item(&b, &wh, "Send test").await;
    b.wait_text(".delivery-status", "Succeeded").await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["_test"], Value::Bool(true));
    assert!(signed_by(&got[0], &secret));
    b.wait_text("pre.body", "\"_test\":true").await;
    b.shot("06-test-delivery").await;
    b.goto(&format!("{base}/portal/webhooks/{wh}/deliveries"))
        .await;
    b.wait_text("table.deliveries", "Test").await;
    b.wait_text("table.deliveries", "Succeeded").await;
    assert!(b.has("svg.chart rect.ok").await);
    b.shot("07-history").await;

    // Toggle off and on.
    b.goto(&format!("{base}/portal/")).await;
    b.click(&format!("li#{wh} button.switch")).await;
    b.wait_text(&format!("li#{wh} .badge"), "Paused").await;
    let switch = b.find(&format!("li#{wh} button.switch")).await;
    assert_eq!(
        switch.attr("aria-checked").await.expect("attr"),
        Some("false".into())
    );
    assert_eq!(
        server.webhook("acc_a", &wh).await["disabled_reason"],
        "manual"
    );
    b.shot("08-paused").await;
    b.click(&format!("li#{wh} button.switch")).await;
    b.wait_text(&format!("li#{wh} .badge"), "Active").await;
    assert_eq!(server.webhook("acc_a", &wh).await["enabled"], true);

    // Edit: the form holds the current values; a bad URL is refused next to its field.
    open_menu_item(&b, &wh, "Edit").await;
    b.wait_text("h1", "Edit webhook").await;
    let name = b.find("#f-name").await.prop("value").await.expect("value");
    assert_eq!(name.as_deref(), Some("Local receiver"));
    b.fill("#f-url", "http://localhost:9/hook").await;
    b.click("form.webhook-form button[type='submit']").await;
    b.wait_text("#f-url-error", "Must use https://").await;
    b.fill("#f-url", &rx.url()).await;
    b.fill("#f-project_ids", "prj_xyz789, prj_other").await;
    b.shot("09-edit").await;
    b.click("form.webhook-form button[type='submit']").await;
    b.wait_text("p.notice", "Webhook saved.").await;
    b.wait_text(&format!("li#{wh} dl.facts"), "prj_other").await;
    assert_eq!(
        server.webhook("acc_a", &wh).await["project_ids"],
        json!(["prj_xyz789", "prj_other"])
    );

    // Rotate: confirm, the new secret once; the old one verifies nothing from then on.
    open_menu_item(&b, &wh, "Rotate secret").await;
    b.wait_text("h1", "Rotate the secret").await;
    b.shot("10-rotate-confirm").await;
    b.click("form button.danger").await;
    let rotated = b
        .find("#secret-value")
        .await
        .prop("value")
        .await
        .expect("value")
        .expect("a secret");
    assert_ne!(rotated, secret);
    b.wait_text("#secret-title", "New signing secret").await;
    b.client.set_window_size(360, 800).await.expect("narrow");
    b.shot("11-list-360px").await;
    b.client
        .execute(
            "document.getElementById(arguments[0]).scrollIntoView()",
            vec![json!(wh)],
        )
        .await
        .expect("scroll");
    b.shot("11-card-360px").await;
    b.goto(&format!("{base}/portal/webhooks/{wh}/deliveries"))
        .await;
    b.wait_text("h1", "Delivery history").await;
    b.shot("11-history-360px").await;
    b.client.set_window_size(1100, 900).await.expect("wide");
    let (status, _) = server.publish("acc_a", event("evt_after_rotate")).await;
    assert_eq!(status, 202);
    let got = rx.wait_for(2).await;
    assert!(!signed_by(&got[1], &secret), "the old secret fails");
    assert!(signed_by(&got[1], &rotated));

    // A failing delivery shows its error; Retry sends it again.
    rx.set_status(500);
    server.publish("acc_a", event("evt_failing")).await;
    rx.wait_for(4).await;
    b.goto(&format!("{base}/portal/webhooks/{wh}/deliveries"))
        .await;
    b.wait_text("table.deliveries", "Failed").await;
    b.wait_text("table.deliveries tbody tr:first-child", "http_status")
        .await;
    b.click("table.deliveries tbody tr:first-child td a").await;
    b.wait_text(".delivery-status", "Failed").await;
    b.wait_text("table.attempts", "http_status").await;
    b.wait_text("table.attempts", "500").await;
    // Each attempt's own detail: the failure in words, the headers it sent (the signature
    // included) and what came back.
    b.wait_text(
        "details.attempt-detail[open] p.error",
        "the endpoint answered HTTP 500 Internal Server Error",
    )
    .await;
    b.wait_text(
        "details.attempt-detail[open] pre.request-headers",
        "x-hallway-signature: t=",
    )
    .await;
    b.wait_text(
        "details.attempt-detail[open] pre.request-headers",
        "x-hallway-event-id: evt_failing",
    )
    .await;
    b.wait_text("details.attempt-detail[open] pre.response-body", "ok")
        .await;
    b.wait_text("pre.body", "evt_failing").await;
    b.shot("12-failed-delivery").await;
    rx.set_status(200);
    b.click("form button.primary").await;
    b.wait_text(".delivery-status", "Succeeded").await;
    assert_eq!(rx.wait_for(5).await[4].json()["id"], "evt_failing");

    // Delete, after confirming.
    b.goto(&format!("{base}/portal/")).await;
    open_menu_item(&b, &wh, "Delete").await;
    b.wait_text("h1", "Delete Local receiver?").await;
    b.click("form button.danger").await;
    b.wait_text("p.notice", "Webhook deleted.").await;
    b.wait_text("p.empty", "No webhooks yet.").await;
    b.shot("13-deleted").await;
    let (status, _) = server
        .admin("GET", &format!("/v1/accounts/acc_a/webhooks/{wh}"), None)
        .await;
    assert_eq!(status, 404);
    b.close().await;
    eprintln!("browser flow: {:?}", started.elapsed());
}

#[tokio::test]
async fn limits_plans_and_auto_disable_in_a_dark_browser() {
    let Some(b) = Browser::start(true).await else {
        return;
    };
    let started = Instant::now();
    let home = Home::new();
    let server = Server::permissive(
        &home,
        &[
            "--retry-delays",
            "0s",
            "--auto-disable-after",
            "1",
            "--max-webhooks-per-account",
            "1",
            "--portal-billing-url",
            "https://app.example.com/settings/billing",
        ],
    )
    .await;
    let base = format!("http://{}", server.addr);
    server.create_account("acc_free", "Free Co", "free").await;
    server.create_account("acc_pro", "Pro Co", "pro").await;
    let rx = Receiver::status(503).await;
    let (w, _) = server.create_webhook("acc_pro", "Flaky", &rx.url()).await;
    let wh = w["id"].as_str().expect("id").to_owned();
    server.publish("acc_pro", event("evt_1")).await;
    eventually("the webhook is auto-disabled", || async {
        let v = server.webhook("acc_pro", &wh).await;
        (v["disabled_reason"] == "consecutive_failures").then_some(())
    })
    .await;

    // Free plan: the spec's message and where to upgrade; no Add.
    b.goto(&format!("{base}{}", link(&server, "acc_free").await))
        .await;
    b.wait_text(
        "section.plan",
        "Webhooks are available exclusively on the Pro plan",
    )
    .await;
    let upgrade = b.find("section.plan a").await;
    assert_eq!(
        upgrade.attr("href").await.expect("href").as_deref(),
        Some("https://app.example.com/settings/billing")
    );
    assert_eq!(
        upgrade.text().await.expect("text"),
        "Upgrade in Settings → Billing"
    );
    let add = b.find("div.add button").await;
    assert_eq!(
        add.attr("disabled").await.expect("attr"),
        Some("true".into())
    );
    b.shot("14-free-plan-dark").await;

    // At the limit: Add is disabled with the reason; the auto-disabled webhook says when and why.
    b.goto(&format!("{base}{}", link(&server, "acc_pro").await))
        .await;
    b.wait_text("#add-reason", "the maximum per account").await;
    b.wait_text(&format!("li#{wh} .badge"), "Auto-disabled")
        .await;
    b.wait_text(&format!("li#{wh} .alert"), "after 1 consecutive failure.")
        .await;
    b.wait_text(&format!("li#{wh} .alert"), "http_status").await;
    b.wait_text(&format!("li#{wh} .alert"), "HTTP 503").await;
    b.shot("15-auto-disabled-dark").await;
    b.goto(&format!("{base}/portal/webhooks/{wh}/deliveries"))
        .await;
    b.wait_text("table.deliveries", "Failed").await;
    b.shot("16-history-dark").await;
    b.goto(&format!("{base}/portal/")).await;
    b.click(&format!("li#{wh} .alert button")).await;
    b.wait_text(&format!("li#{wh} .badge"), "Active").await;
    let v = server.webhook("acc_pro", &wh).await;
    assert_eq!(v["enabled"], true);
    assert_eq!(v["consecutive_failures"], 0);
    b.close().await;
    eprintln!("dark browser flow: {:?}", started.elapsed());
}
