//! The OpenAPI document cannot drift from the code: the committed `docs/openapi.json` is what
//! the binary generates (`UPDATE_OPENAPI=1 cargo test --test openapi` rewrites it), the server
//! serves it at `/openapi.json`, `docs/api.md` lists the same routes, and every answer of a
//! walk through every operation has a documented status and a body its schema describes
//! exactly (no field more, none missing).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

/// The document the binary generates (`hallway-webhooks openapi`).
fn generated() -> String {
    let (code, out, err) = run_cli(&["openapi"], None);
    assert_eq!(code, 0, "hallway-webhooks openapi failed: {err}");
    out
}

#[test]
fn the_committed_document_is_the_one_the_code_generates() {
    let fresh = generated();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &fresh).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "docs/openapi.json differs from the code's document from line {}:\n  committed: {:?}\n  generated: {:?}\n\
             regenerate it with `UPDATE_OPENAPI=1 cargo test --test openapi` and commit it",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end>"),
            fresh.lines().nth(line).unwrap_or("<end>")
        );
    }
    let doc: Value = serde_json::from_str(&fresh).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
}

/// `(METHOD, /path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn docs_api_md_lists_exactly_the_documented_routes() {
    let doc: Value = serde_json::from_str(&generated()).expect("JSON");
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/api.md"))
            .expect("docs/api.md");
    let mut listed = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cell = &line[3..];
        let Some(end) = cell.find('`') else { continue };
        let Some((method, path)) = cell[..end].split_once(' ') else {
            continue;
        };
        if method.chars().all(|c| c.is_ascii_uppercase()) && path.starts_with('/') {
            let path = path.split('?').next().unwrap_or(path);
            listed.insert((method.to_owned(), path.to_owned()));
        }
    }
    let documented = operations(&doc);
    let missing: Vec<_> = documented.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/api.md's route tables and the OpenAPI document differ:\n  not in docs/api.md: {missing:?}\n  not served: {extra:?}"
    );
}

/// Checks answers against the document and remembers which operations were exercised.
struct Checker {
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

impl Checker {
    /// Checks one answer of `method template` (the documented path).
    #[track_caller]
    fn check(&mut self, method: &str, template: &str, status: u16, body: &Value) {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not list: {body}"
        );
        match response["content"]["application/json"]["schema"].as_object() {
            Some(_) => {
                let schema = response["content"]["application/json"]["schema"].clone();
                if let Err(e) = validate(&self.doc, &schema, body, "$") {
                    panic!("{method} {template} {status}: the body does not match the document: {e}\n{body}");
                }
            }
            None if response.get("content").is_none() => assert!(
                body.is_null(),
                "{method} {template} {status}: documented without a body, answered {body}"
            ),
            None => {}
        }
        self.seen
            .insert((method.to_uppercase(), template.to_owned()));
    }
}

/// The properties a schema names, through `$ref` and `allOf`.
fn property_names(doc: &Value, schema: &Value, out: &mut BTreeSet<String>) {
    let schema = resolve(doc, schema);
    if let Some(props) = schema["properties"].as_object() {
        out.extend(props.keys().cloned());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        property_names(doc, part, out);
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "$ref {r} names no schema");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// A JSON Schema check of the subset the document uses, with objects closed: a field the
/// schema does not name is drift, not an extension.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        if !options.iter().any(|s| validate(doc, s, v, at).is_ok()) {
            return Err(format!("{at}: {v} matches none of {schema}"));
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut names = BTreeSet::new();
        property_names(doc, schema, &mut names);
        if let Some(obj) = v.as_object() {
            if let Some(k) = obj.keys().find(|k| !names.contains(*k)) {
                return Err(format!("{at}: field {k:?} is not in the document"));
            }
        }
        for part in parts {
            validate_open(doc, part, v, at)?;
        }
    }
    validate_here(doc, schema, v, at, true)
}

fn validate_open(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    validate_here(doc, schema, v, at, false)
}

fn validate_here(
    doc: &Value,
    schema: &Value,
    v: &Value,
    at: &str,
    closed: bool,
) -> Result<(), String> {
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !fits {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(v) {
            return Err(format!("{at}: {v} is not one of {options:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !obj.contains_key(name) {
                return Err(format!("{at}: the required field {name:?} is missing"));
            }
        }
        let props = schema["properties"].as_object();
        for (k, value) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, value, &format!("{at}.{k}"))?,
                None if closed && props.is_some() => {
                    return Err(format!("{at}: field {k:?} is not in the document"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, item) in list.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[test]
fn the_validator_catches_drift() {
    let doc = json!({"components": {"schemas": {
        "A": {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}}}
    }}});
    let a = json!({"$ref": "#/components/schemas/A"});
    assert!(validate(&doc, &a, &json!({"a": "x", "b": null}), "$").is_ok());
    assert!(validate(&doc, &a, &json!({"a": "x", "c": 1}), "$").is_err());
    assert!(validate(&doc, &a, &json!({"b": 1}), "$").is_err());
    assert!(validate(&doc, &a, &json!({"a": 1}), "$").is_err());
    let both = json!({"allOf": [a, {"type": "object", "properties": {"k": {"type": "string"}}}]});
    assert!(validate(&doc, &both, &json!({"a": "x", "k": "y"}), "$").is_ok());
    assert!(validate(&doc, &both, &json!({"a": "x", "k": "y", "z": 1}), "$").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_documented() {
    let home = Home::new();
    let receiver = Receiver::status(200).await;
    let server = Server::permissive(&home, &[]).await;
    let doc: Value = serde_json::from_str(&generated()).expect("JSON");
    let mut c = Checker {
        doc: doc.clone(),
        seen: BTreeSet::new(),
    };
    let served = server.http.send("GET", "/openapi.json", None, None).await;
    assert_eq!(served.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&served.body),
        generated(),
        "/openapi.json serves the generated document"
    );
    c.check("GET", "/openapi.json", 200, &Value::Null);

    for path in ["/healthz", "/readyz"] {
        let got = server.call("GET", path, None, None).await;
        c.check("GET", path, got.0, &got.1);
    }
    assert_eq!(
        server.http.send("GET", "/metrics", None, None).await.status,
        200
    );
    c.seen.insert(("GET".into(), "/metrics".into()));

    // Accounts.
    let t = "/v1/accounts";
    let got = server
        .admin(
            "POST",
            t,
            Some(json!({"id": "acc_1", "name": "Acme", "plan": "pro"})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    let key = got.1["api_key"].as_str().expect("api_key").to_owned();
    let got = server
        .admin(
            "POST",
            t,
            Some(json!({"id": "acc_free", "name": "Free", "plan": "free"})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    for body in [
        json!({"id": "acc_1", "name": "Again", "plan": "pro"}),
        json!({"id": "acc_2", "plan": "pro"}),
        json!({"id": "acc_2", "name": "N", "plan": "pro", "extra": 1}),
    ] {
        let got = server.admin("POST", t, Some(body)).await;
        c.check("POST", t, got.0, &got.1);
    }
    let got = server.call("POST", t, None, Some(json!({}))).await;
    c.check("POST", t, got.0, &got.1);
    let got = server.call("POST", t, Some(&key), Some(json!({}))).await;
    c.check("POST", t, got.0, &got.1);

    let t = "/v1/accounts/{acc}";
    for path in ["/v1/accounts/acc_1", "/v1/accounts/acc_nope"] {
        let got = server.admin("GET", path, None).await;
        c.check("GET", t, got.0, &got.1);
    }
    let got = server
        .admin(
            "PATCH",
            "/v1/accounts/acc_1",
            Some(json!({"name": "Acme Research"})),
        )
        .await;
    c.check("PATCH", t, got.0, &got.1);
    let got = server
        .call("PATCH", "/v1/accounts/acc_1", Some(&key), Some(json!({})))
        .await;
    c.check("PATCH", t, got.0, &got.1);

    // Webhooks.
    let t = "/v1/accounts/{acc}/webhooks";
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/webhooks",
            Some(json!({"name": "R", "url": receiver.url(), "events": [EVENT_TYPE]})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    let wh = got.1["id"].as_str().expect("id").to_owned();
    for (acc, body) in [
        (
            "acc_free",
            json!({"name": "R", "url": receiver.url(), "events": [EVENT_TYPE]}),
        ),
        (
            "acc_1",
            json!({"name": "R", "url": "not a url", "events": [EVENT_TYPE]}),
        ),
    ] {
        let got = server
            .admin("POST", &format!("/v1/accounts/{acc}/webhooks"), Some(body))
            .await;
        c.check("POST", t, got.0, &got.1);
    }
    let got = server
        .admin("GET", "/v1/accounts/acc_1/webhooks", None)
        .await;
    c.check("GET", t, got.0, &got.1);

    let t = "/v1/accounts/{acc}/webhooks/{wh}";
    let path = format!("/v1/accounts/acc_1/webhooks/{wh}");
    let got = server.admin("GET", &path, None).await;
    c.check("GET", t, got.0, &got.1);
    let got = server
        .admin("PATCH", &path, Some(json!({"description": "notes"})))
        .await;
    c.check("PATCH", t, got.0, &got.1);
    let got = server
        .admin("PATCH", &path, Some(json!({"secret": "x"})))
        .await;
    c.check("PATCH", t, got.0, &got.1);

    let got = server
        .admin("POST", &format!("{path}/rotate-secret"), None)
        .await;
    c.check(
        "POST",
        "/v1/accounts/{acc}/webhooks/{wh}/rotate-secret",
        got.0,
        &got.1,
    );
    let got = server.admin("POST", &format!("{path}/test"), None).await;
    c.check(
        "POST",
        "/v1/accounts/{acc}/webhooks/{wh}/test",
        got.0,
        &got.1,
    );

    // Events and deliveries.
    let t = "/v1/accounts/{acc}/events";
    let got = server.publish("acc_1", event("evt_1")).await;
    c.check("POST", t, got.0, &got.1);
    let got = server.publish("acc_1", event("evt_1")).await;
    c.check("POST", t, got.0, &got.1);
    let mut changed = event("evt_1");
    changed["insights"]["count"] = json!(9);
    let got = server.publish("acc_1", changed).await;
    c.check("POST", t, got.0, &got.1);
    let got = server
        .publish(
            "acc_1",
            json!({"type": "no.such.type", "project": {"id": "p"}}),
        )
        .await;
    c.check("POST", t, got.0, &got.1);

    let t = "/v1/accounts/{acc}/webhooks/{wh}/deliveries";
    let got = server
        .admin("GET", &format!("{path}/deliveries"), None)
        .await;
    c.check("GET", t, got.0, &got.1);
    let got = server
        .admin("GET", &format!("{path}/deliveries?limt=5"), None)
        .await;
    c.check("GET", t, got.0, &got.1);
    let dlv = server.deliveries("acc_1", &wh).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server
        .wait_delivery("acc_1", &wh, &dlv, "finished", |d| d["status"] != "pending")
        .await;
    let t = "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}";
    let got = server
        .admin("GET", &format!("{path}/deliveries/{dlv}"), None)
        .await;
    c.check("GET", t, got.0, &got.1);
    let got = server
        .admin("GET", &format!("{path}/deliveries/dlv_nope"), None)
        .await;
    c.check("GET", t, got.0, &got.1);
    let got = server
        .admin("POST", &format!("{path}/deliveries/{dlv}/retry"), None)
        .await;
    c.check(
        "POST",
        "/v1/accounts/{acc}/webhooks/{wh}/deliveries/{dlv}/retry",
        got.0,
        &got.1,
    );

    let t = "/v1/accounts/{acc}/webhooks/{wh}/recover";
    let got = server
        .admin(
            "POST",
            &format!("{path}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00.000Z"})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    let got = server
        .admin("POST", &format!("{path}/recover"), Some(json!({})))
        .await;
    c.check("POST", t, got.0, &got.1);
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/events/evt_1/replay",
            Some(json!({})),
        )
        .await;
    c.check(
        "POST",
        "/v1/accounts/{acc}/events/{evt}/replay",
        got.0,
        &got.1,
    );

    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_1/portal-sessions",
            Some(json!({})),
        )
        .await;
    c.check("POST", "/v1/accounts/{acc}/portal-sessions", got.0, &got.1);

    let got = server.admin("GET", "/v1/accounts?limit=1", None).await;
    c.check("GET", "/v1/accounts", got.0, &got.1);
    let got = server.admin("GET", "/v1/accounts?limit=1000", None).await;
    c.check("GET", "/v1/accounts", got.0, &got.1);
    let t = "/v1/accounts/{acc}/rotate-key";
    let got = server
        .admin("POST", "/v1/accounts/acc_free/rotate-key", None)
        .await;
    c.check("POST", t, got.0, &got.1);
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_free/rotate-key",
            Some(json!({"grace": "1h"})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    let got = server
        .admin(
            "POST",
            "/v1/accounts/acc_free/rotate-key",
            Some(json!({"grace": "9d"})),
        )
        .await;
    c.check("POST", t, got.0, &got.1);
    let got = server.admin("DELETE", "/v1/accounts/acc_free", None).await;
    c.check("DELETE", "/v1/accounts/{acc}", got.0, &got.1);
    let got = server.admin("DELETE", "/v1/accounts/acc_free", None).await;
    c.check("DELETE", "/v1/accounts/{acc}", got.0, &got.1);

    let got = server.admin("GET", "/v1/event-types", None).await;
    c.check("GET", "/v1/event-types", got.0, &got.1);
    let got = server
        .call("GET", "/v1/event-types", Some("wrong"), None)
        .await;
    c.check("GET", "/v1/event-types", got.0, &got.1);

    let got = server.admin("DELETE", &path, None).await;
    c.check("DELETE", "/v1/accounts/{acc}/webhooks/{wh}", got.0, &got.1);
    let got = server.admin("DELETE", &path, None).await;
    c.check("DELETE", "/v1/accounts/{acc}/webhooks/{wh}", got.0, &got.1);

    let unvisited: Vec<_> = operations(&doc).difference(&c.seen).cloned().collect();
    assert!(
        unvisited.is_empty(),
        "operations this walk does not exercise (add them): {unvisited:?}"
    );
}
