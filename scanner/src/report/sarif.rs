//! SARIF 2.1.0 as GitHub code scanning accepts it: relative URIs under
//! `%SRCROOT%`, a `partialFingerprints` entry per result, rule metadata with
//! `security-severity`. Secrets are always masked in SARIF messages, since
//! code scanning shows them to everyone with read access.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::Report;
use crate::finding::mask;
use crate::rules::{Confidence, Rule};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "error",
        Confidence::Medium => "warning",
        Confidence::Low => "note",
    }
}

fn severity(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "9.0",
        Confidence::Medium => "7.0",
        Confidence::Low => "4.0",
    }
}

fn precision(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "very-high",
        Confidence::Medium => "high",
        Confidence::Low => "medium",
    }
}

fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A URI reference for a path: percent-encoded, relative paths left relative.
fn uri(path: &str) -> (String, bool) {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if path.starts_with('/') {
        (format!("file://{s}"), false)
    } else {
        (s, true)
    }
}

fn rule_descriptor(r: &Rule) -> Value {
    let mut tags = vec![json!("security"), json!("secret")];
    tags.extend(r.tags.iter().map(|t| json!(t)));
    json!({
        "id": r.id,
        "name": camel(&r.id),
        "shortDescription": { "text": r.name },
        "fullDescription": { "text": r.description.as_deref().unwrap_or(&r.name) },
        "help": {
            "text": format!("A {} was committed. Revoke it at its provider, replace it, then remove it from history.", r.name)
        },
        "defaultConfiguration": { "level": level(r.confidence) },
        "properties": {
            "tags": tags,
            "precision": precision(r.confidence),
            "security-severity": severity(r.confidence),
        }
    })
}

pub(super) fn write(out: &mut dyn Write, report: &Report, rules: &[Rule]) -> io::Result<()> {
    let index: std::collections::HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let (uri, relative) = uri(&f.path);
            let mut artifact = json!({ "uri": uri });
            if relative {
                artifact["uriBaseId"] = json!("%SRCROOT%");
            }
            let mut result = json!({
                "ruleId": f.rule_id,
                "level": level(f.confidence),
                "message": { "text": format!("{} found: {}", f.rule_name, mask(&f.secret)) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": artifact,
                        "region": {
                            "startLine": f.location.line,
                            "startColumn": f.location.column,
                            "endLine": f.location.end_line,
                            "endColumn": f.location.end_column + 1,
                        }
                    }
                }],
                "partialFingerprints": { "keyburn/v1": f.fingerprint },
                "properties": { "confidence": f.confidence.as_str(), "entropy": f.entropy },
            });
            if let Some(&i) = index.get(f.rule_id.as_str()) {
                result["ruleIndex"] = json!(i);
            }
            if let Some(c) = &f.commit {
                result["properties"]["commit"] = json!(c.id);
                result["properties"]["author"] = json!(c.email);
            }
            result
        })
        .collect();
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "keyburn",
                    "informationUri": "https://github.com/keyburn/keyburn",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules.iter().map(rule_descriptor).collect::<Vec<_>>(),
                }
            },
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": { "%SRCROOT%": { "description": { "text": "The scanned directory." } } },
            "results": results,
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
