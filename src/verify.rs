//! The `verify` command: checks a pasted signature header (or Standard Webhooks' three) against
//! a body and a secret, and says how to fix what was pasted when it cannot be read.

use crate::check::{reason, require_secret, Signed};
use crate::cli::VerifyArgs;
use hallway_domain::signature::{self, standard, VerifyError};
use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// The header value from what was pasted: the value alone, or a whole
/// `X-Hallway-Signature: t=...,v1=...` line (any case, surrounding spaces ignored).
pub fn header_value(pasted: &str) -> Result<&str, String> {
    let pasted = pasted.trim();
    match pasted.split_once(':') {
        None => Ok(pasted),
        Some((name, value)) if name.trim().eq_ignore_ascii_case(signature::HEADER_NAME) => {
            Ok(value.trim())
        }
        Some((name, _)) => Err(format!(
            "--header: {:?} is not the {} header; paste its value (`t=...,v1=...`) or the whole `{}: t=...,v1=...` line",
            hallway_domain::types::Echo(name.trim()).to_string(),
            signature::HEADER_NAME,
            signature::HEADER_NAME
        )),
    }
}

/// The signature headers from what was pasted to `verify`: one `X-Hallway-Signature` value or
/// line, or Standard Webhooks' three `name: value` lines.
pub fn pasted_signature(pasted: &[String]) -> Result<Signed<'_>, String> {
    let standard_names = [
        standard::ID_HEADER,
        standard::TIMESTAMP_HEADER,
        standard::SIGNATURE_HEADER,
    ];
    let is_standard = |line: &str| {
        line.split_once(':').is_some_and(|(n, _)| {
            standard_names
                .iter()
                .any(|s| s.eq_ignore_ascii_case(n.trim()))
        })
    };
    if let [one] = pasted {
        if !is_standard(one) {
            return header_value(one).map(Signed::Hallway);
        }
    }
    let mut pairs = Vec::with_capacity(pasted.len());
    for line in pasted {
        let line = line.trim();
        let Some((name, value)) = line.split_once(':').filter(|_| is_standard(line)) else {
            return Err(format!(
                "--header: {:?} is not a Standard Webhooks header line; for that scheme paste the three lines `webhook-id: ...`, `webhook-timestamp: ...` and `webhook-signature: ...`, each after its own --header",
                hallway_domain::types::Echo(line).to_string()
            ));
        };
        pairs.push((name.trim(), value.trim()));
    }
    Signed::find(&pairs).map_err(|e| format!("--header: {e}"))
}

/// Runs `verify`: 0 for a valid signature, 1 for an invalid one, 2 for bad input.
pub fn verify(args: VerifyArgs) -> ExitCode {
    // Checked before the body, so a missing secret is not preceded by a wait on stdin.
    let (secret, signed) = match require_secret(args.secret.as_deref())
        .and_then(|s| pasted_signature(&args.header).map(|h| (s, h)))
    {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match &args.body_file {
        Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map(|_| buf)
                .map_err(|e| format!("stdin: {e}"))
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read the body: {e}");
            return ExitCode::from(2);
        }
    };
    let now = args.now.unwrap_or_else(now_secs);
    match signed.verify(secret, &body, now, args.tolerance_secs) {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {}", reason(&e));
            match (&e, &signed) {
                (VerifyError::Malformed(_), Signed::Hallway(_)) => eprintln!(
                    "hint: --header takes the header's value, `t=<unix seconds>,v1=<64 hex digits>`, or the whole line as received, `{}: t=...,v1=...`",
                    signature::HEADER_NAME
                ),
                (VerifyError::Malformed(_), Signed::Standard { .. }) => eprintln!(
                    "hint: Standard Webhooks' headers read `webhook-id: <id>`, `webhook-timestamp: <unix seconds>` and `webhook-signature: v1,<base64>` (several separated by spaces)"
                ),
                _ => {}
            }
            ExitCode::FAILURE
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_header_line_gives_its_value() {
        assert_eq!(header_value("t=1,v1=ab"), Ok("t=1,v1=ab"));
        assert_eq!(
            header_value("X-Hallway-Signature: t=1,v1=ab\r\n"),
            Ok("t=1,v1=ab")
        );
        assert_eq!(
            header_value("x-hallway-signature:t=1,v1=ab"),
            Ok("t=1,v1=ab")
        );
        let e = header_value("Authorization: Bearer x").unwrap_err();
        assert!(
            e.contains("Authorization") && e.contains("X-Hallway-Signature"),
            "{e}"
        );
    }

    #[test]
    fn pasted_standard_webhooks_lines_give_the_three_values() {
        let lines = |ls: &[&str]| ls.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let three = lines(&[
            "webhook-id: evt_1",
            "Webhook-Timestamp: 1768059000",
            "webhook-signature: v1,abc= v1,def=",
        ]);
        assert_eq!(
            pasted_signature(&three),
            Ok(Signed::Standard {
                id: "evt_1",
                timestamp: "1768059000",
                signatures: "v1,abc= v1,def="
            })
        );
        assert_eq!(
            pasted_signature(&lines(&["t=1,v1=ab"])),
            Ok(Signed::Hallway("t=1,v1=ab"))
        );
        let e = pasted_signature(&three[..2]).unwrap_err();
        assert!(e.contains("missing webhook-signature"), "{e}");
        let e = pasted_signature(&lines(&["webhook-id: evt_1", "t=1,v1=ab"])).unwrap_err();
        assert!(e.contains("three lines"), "{e}");
    }
}
