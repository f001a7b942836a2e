//! The verifiers in `docs/receiving.md` run as written (Python and Node, where installed)
//! against signatures the engine makes: valid headers pass, with spaces after the commas and
//! with a second `v1` (a rotation's grace, new secret first or not); bad ones fail with the
//! error the doc promises. The Express handler answers 200 or 400; the Standard Webhooks
//! verifiers take what a `standard` webhook sends.

use hallway_webhooks::signature;
use hallway_webhooks::SignatureScheme;
use serde_json::json;
use std::process::Command;

const SECRET: &str = "whsec_docs_test_secret_0123456789";
/// A Standard Webhooks secret (base64 after `whsec_`), and the one a grace still signs with.
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STD_OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const BODY: &str = r#"{"id":"evt_1","type":"session.processing.completed","note":"é"}"#;

/// The body of the first fenced block of `lang` in the doc, up to (not including) the first
/// line starting with `stop`, if given.
fn doc_block(lang: &str, stop: Option<&str>) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/receiving.md"))
        .expect("docs/receiving.md");
    let fence = format!("```{lang}\n");
    // `lang` may carry a word after the language (`js standard-webhooks`), which GitHub
    // ignores for highlighting.
    let start = doc.find(&fence).expect("a fenced block") + fence.len();
    let block = &doc[start..];
    let end = block.find("```").expect("the block's end");
    block[..end]
        .lines()
        .take_while(|l| match stop {
            Some(s) => !l.trim_start().starts_with(s),
            None => true,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Header variants and whether each must verify.
fn cases() -> Vec<(&'static str, String, bool)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let sig = signature::compute(SECRET, now, BODY.as_bytes());
    let wrong = "0".repeat(64);
    let grace = signature::sign_with(SECRET, Some("whsec_old"), now, BODY.as_bytes());
    let old_first = signature::sign_with("whsec_old", Some(SECRET), now, BODY.as_bytes());
    vec![
        ("plain", format!("t={now},v1={sig}"), true),
        ("a grace: new secret first", grace, true),
        ("a grace: this secret second", old_first, true),
        ("spaces after commas", format!("t={now}, v1={sig}"), true),
        ("a second v1", format!("t={now},v1={wrong},v1={sig}"), true),
        ("mismatch", format!("t={now},v1={wrong}"), false),
        ("non-ASCII v1", format!("t={now},v1=é{}", &sig[1..]), false),
        ("stale", format!("t={},v1={sig}", now - 3600), false),
        ("no v1", format!("t={now}"), false),
    ]
}

/// Standard Webhooks header sets (lowercase names) and whether each must verify under
/// `STD_SECRET`.
fn standard_cases() -> Vec<(&'static str, serde_json::Value, bool)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let headers = |id: &str, t: u64, current: &str, previous: Option<&str>| {
        let sent = signature::headers(
            SignatureScheme::Standard,
            id,
            current,
            previous,
            t,
            BODY.as_bytes(),
        )
        .expect("base64 secrets");
        let mut map = serde_json::Map::new();
        for (name, value) in sent {
            map.insert(name.to_ascii_lowercase(), json!(value));
        }
        serde_json::Value::Object(map)
    };
    let mut missing = headers("evt_1", now, STD_SECRET, None);
    missing
        .as_object_mut()
        .expect("an object")
        .remove("webhook-timestamp");
    let mut garbled = headers("evt_1", now, STD_SECRET, None);
    garbled["webhook-signature"] = json!("v1,é!!");
    vec![
        ("plain", headers("evt_1", now, STD_SECRET, None), true),
        (
            "an id with a dot",
            headers("order.42", now, STD_SECRET, None),
            true,
        ),
        (
            "a grace: new first",
            headers("evt_1", now, STD_SECRET, Some(STD_OLD)),
            true,
        ),
        (
            "a grace: this second",
            headers("evt_1", now, STD_OLD, Some(STD_SECRET)),
            true,
        ),
        ("mismatch", headers("evt_1", now, STD_OLD, None), false),
        (
            "stale",
            headers("evt_1", now - 3600, STD_SECRET, None),
            false,
        ),
        ("a missing header", missing, false),
        ("a garbled signature", garbled, false),
    ]
}

fn run(program: &str, args: &[&str], script: &str) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .arg(script)
        .env("SECRET", SECRET)
        .env("STD_SECRET", STD_SECRET)
        .env(
            "STD_CASES",
            serde_json::Value::Array(standard_cases().into_iter().map(|(_, h, _)| h).collect())
                .to_string(),
        )
        .env("BODY", BODY)
        .env(
            "CASES",
            cases()
                .iter()
                .map(|(_, h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .output();
    match out {
        Ok(o) => {
            assert!(
                o.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipped: {program} is not installed here ({e})");
            None
        }
    }
}

fn check(lang: &str, output: &str, error_kind: &str) {
    let cases: Vec<(&str, bool)> = cases().into_iter().map(|(n, _, v)| (n, v)).collect();
    check_cases(lang, output, error_kind, &cases);
}

fn check_cases(lang: &str, output: &str, error_kind: &str, cases: &[(&str, bool)]) {
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{lang} printed:\n{output}");
    for ((name, valid), line) in cases.iter().zip(lines) {
        if *valid {
            assert_eq!(line, "ok", "{lang}, {name}");
        } else {
            assert!(
                line.starts_with(error_kind),
                "{lang}, {name}: expected {error_kind}, got {line}"
            );
        }
    }
}

#[test]
fn the_python_verifier_accepts_what_it_should_and_raises_value_error_otherwise() {
    let script = format!(
        "{}\n\nimport os\nfor h in os.environ['CASES'].split('\\n'):\n    try:\n        verify_webhook(os.environ['BODY'].encode(), h, os.environ['SECRET'])\n        print('ok')\n    except Exception as e:\n        print(type(e).__name__ + ': ' + str(e))\n",
        doc_block("python", None)
    );
    if let Some(out) = run("python3", &["-c"], &script) {
        check("python", &out, "ValueError");
    }
}

#[test]
fn the_node_verifier_accepts_what_it_should_and_throws_otherwise() {
    let script = format!(
        "{}\n\nfor (const h of process.env.CASES.split('\\n')) {{\n  try {{ verifyWebhook(process.env.BODY, h, process.env.SECRET); console.log('ok'); }}\n  catch (e) {{ console.log('Error: ' + e.message); }}\n}}\n",
        doc_block("js", Some("// Express"))
    );
    if let Some(out) = run("node", &["-e"], &script) {
        check("node", &out, "Error");
    }
}

#[test]
fn the_express_handler_answers_200_for_a_good_signature_and_400_otherwise() {
    // The whole Node block, Express handler included, with `app` and `express` stood in for.
    let script = format!(
        "const express = {{ raw: () => null }};\nlet handler;\nconst app = {{ post: (path, raw, h) => {{ handler = h; }} }};\nprocess.env.HALLWAY_SECRET = process.env.SECRET;\n{}\n\nfor (const h of process.env.CASES.split('\\n')) {{\n  const res = {{ code: 0, status(c) {{ this.code = c; return this; }}, send() {{ return this; }}, sendStatus(c) {{ this.code = c; return this; }} }};\n  handler({{ body: Buffer.from(process.env.BODY), get: (name) => name === 'X-Hallway-Signature' ? h : undefined }}, res);\n  console.log(res.code === 200 ? 'ok' : 'status ' + res.code);\n}}\n",
        doc_block("js", None)
    );
    if let Some(out) = run("node", &["-e"], &script) {
        check("express", &out, "status 400");
    }
}

fn std_names() -> Vec<(&'static str, bool)> {
    standard_cases()
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect()
}

#[test]
fn the_standard_webhooks_verifiers_take_what_a_standard_webhook_sends() {
    let node = format!(
        "{}\n\nfor (const h of JSON.parse(process.env.STD_CASES)) {{\n  try {{ verifyStandardWebhook(process.env.BODY, h, process.env.STD_SECRET); console.log('ok'); }}\n  catch (e) {{ console.log('Error: ' + e.message); }}\n}}\n",
        doc_block("js standard-webhooks", None)
    );
    if let Some(out) = run("node", &["-e"], &node) {
        check_cases("node (standard)", &out, "Error", &std_names());
    }
    let python = format!(
        "{}\n\nimport json, os\nfor h in json.loads(os.environ['STD_CASES']):\n    try:\n        verify_standard_webhook(os.environ['BODY'].encode(), h, os.environ['STD_SECRET'])\n        print('ok')\n    except Exception as e:\n        print(type(e).__name__ + ': ' + str(e))\n",
        doc_block("python standard-webhooks", None)
    );
    if let Some(out) = run("python3", &["-c"], &python) {
        check_cases("python (standard)", &out, "ValueError", &std_names());
    }
}
