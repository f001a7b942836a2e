//! The verifiers in `docs/receiving.md` run as written (Python and Node, where installed)
//! against signatures the engine makes: valid headers pass, with spaces after the commas and
//! with a second `v1`; bad ones fail with the error the doc promises.

use hallway_webhooks::signature;
use std::process::Command;

const SECRET: &str = "whsec_docs_test_secret_0123456789";
const BODY: &str = r#"{"id":"evt_1","type":"session.processing.completed","note":"é"}"#;

/// The body of the first fenced block of `lang` in the doc, up to (not including) the first
/// line starting with `stop`, if given.
fn doc_block(lang: &str, stop: Option<&str>) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/receiving.md"))
        .expect("docs/receiving.md");
    let fence = format!("```{lang}\n");
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
    vec![
        ("plain", format!("t={now},v1={sig}"), true),
        ("spaces after commas", format!("t={now}, v1={sig}"), true),
        ("a second v1", format!("t={now},v1={wrong},v1={sig}"), true),
        ("mismatch", format!("t={now},v1={wrong}"), false),
        ("non-ASCII v1", format!("t={now},v1=é{}", &sig[1..]), false),
        ("stale", format!("t={},v1={sig}", now - 3600), false),
        ("no v1", format!("t={now}"), false),
    ]
}

fn run(program: &str, args: &[&str], script: &str) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .arg(script)
        .env("SECRET", SECRET)
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
    let lines: Vec<&str> = output.lines().collect();
    let cases = cases();
    assert_eq!(lines.len(), cases.len(), "{lang} printed:\n{output}");
    for ((name, _, valid), line) in cases.iter().zip(lines) {
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
