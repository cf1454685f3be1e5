//! SARIF 2.1.0 as GitHub code scanning accepts it: relative URIs under
//! `%SRCROOT%` (absolute paths under the scanned root made relative), a
//! `partialFingerprints` entry per result, the commit of a history finding
//! in its message and properties, rule metadata with `security-severity`
//! and help, and an invocation saying whether the scan saw everything,
//! with a notification per file skipped or unreadable. Secrets are always
//! masked, since code scanning shows them to everyone with read access.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::{NoticeLevel, Report};
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

/// `path` relative to `root` when it lies under it (findings of an
/// absolute scan path), else as it is.
fn under_root<'a>(path: &'a str, root: Option<&str>) -> &'a str {
    root.and_then(|r| path.strip_prefix(r))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(path)
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

/// An `artifactLocation` for `path`: relative paths under `%SRCROOT%`.
fn artifact_location(path: &str) -> Value {
    let (uri, relative) = uri(path);
    let mut artifact = json!({ "uri": uri });
    if relative {
        artifact["uriBaseId"] = json!("%SRCROOT%");
    }
    artifact
}

fn rule_descriptor(r: &Rule) -> Value {
    let mut tags = vec![json!("security"), json!("secret")];
    tags.extend(r.tags.iter().map(|t| json!(t)));
    json!({
        "id": r.id,
        "name": camel(&r.id),
        "shortDescription": { "text": r.name },
        "fullDescription": { "text": r.description.as_deref().unwrap_or(&r.name) },
        "helpUri": HELP_URI,
        "help": {
            "text": format!("Secret committed: {}. Revoke it at its provider, issue a replacement, then remove it from history.", r.name),
            "markdown": help_markdown(r),
        },
        "defaultConfiguration": { "level": level(r.confidence) },
        "properties": {
            "tags": tags,
            "precision": precision(r.confidence),
            "security-severity": severity(r.confidence),
        }
    })
}

const HELP_URI: &str = "https://github.com/keyburn/keyburn#what-to-do-when-a-secret-leaked";

fn help_markdown(r: &Rule) -> String {
    let about = r
        .description
        .as_deref()
        .map(|d| format!("{d}\n\n"))
        .unwrap_or_default();
    format!(
        "**{}** (`{}`)\n\n{about}A credential in a repository is a leaked credential: \
         everyone who can read the repository, its forks and clones can use it.\n\n\
         1. **Revoke** it at its provider first (`keyburn revoke` where the provider \
         has an API), and check that it is dead.\n\
         2. **Replace** it: issue a new one and keep it in a secret manager, not in the code.\n\
         3. **Remove** it from history (`git filter-repo --replace-text`), force-push, and \
         ask collaborators to re-clone: revocation is what protects you, since copies remain.\n\n\
         A reviewed false positive goes in a baseline (`--baseline`, by the finding's \
         fingerprint) or gets `keyburn:allow` on its line.",
        r.name, r.id
    )
}

pub(super) fn write(out: &mut dyn Write, report: &Report, rules: &[Rule]) -> io::Result<()> {
    let root = report.root.as_ref().and_then(|r| r.to_str());
    let index: std::collections::HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let path = under_root(&f.path, root);
            let artifact = artifact_location(path);
            let mut result = json!({
                "ruleId": f.rule_id,
                "level": level(f.confidence),
                "message": { "text": match &f.commit {
                    Some(c) => format!(
                        "{} found in {} at commit {}: {}",
                        f.rule_name,
                        path,
                        &c.id[..c.id.len().min(7)],
                        mask(&f.secret)
                    ),
                    None => format!("{} found in {}: {}", f.rule_name, path, mask(&f.secret)),
                } },
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
            if let Some((file, member)) = path.split_once('!') {
                // In an archive: the location is the archive file (the
                // member's lines are not the file's), the member a property.
                result["locations"][0]["physicalLocation"] =
                    json!({ "artifactLocation": artifact_location(file) });
                result["properties"]["archiveMember"] = json!(member);
            }
            if let Some(&i) = index.get(f.rule_id.as_str()) {
                result["ruleIndex"] = json!(i);
            }
            result["properties"]["source"] = json!(f.source);
            if let Some(v) = &f.validation {
                result["properties"]["validation"] = json!(v);
            }
            if !f.decoded_from.is_empty() {
                result["properties"]["decodedFrom"] = json!(f.decoded_from);
            }
            if let Some(c) = &f.commit {
                result["properties"]["commit"] = json!(c.id);
                result["properties"]["commitSha"] = json!(c.id);
                result["properties"]["author"] = json!(c.email);
                result["properties"]["date"] = json!(c.date);
                // Keeps one alert per commit apart where a consumer wants it.
                result["partialFingerprints"]["keyburn/commit/v1"] =
                    json!(format!("{}:{}", f.fingerprint, c.id));
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
            "originalUriBaseIds": { "%SRCROOT%": src_root(report) },
            "invocations": [invocation(report)],
            "results": results,
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn src_root(report: &Report) -> Value {
    let mut base = json!({ "description": { "text": "The scanned repository or directory." } });
    if let Some(root) = report.root.as_ref().and_then(|r| r.to_str()) {
        let (u, _) = uri(root);
        base["uri"] = json!(format!("{}/", u.trim_end_matches('/')));
    }
    base
}

/// Whether the scan saw everything it was asked to, and what it did not.
fn invocation(report: &Report) -> Value {
    let notifications: Vec<Value> = report
        .notices
        .iter()
        .map(|n| {
            let mut v = json!({
                "level": match n.level {
                    NoticeLevel::Skipped => "warning",
                    NoticeLevel::Error => "error",
                },
                "message": { "text": if n.path.is_empty() {
                    n.message.clone()
                } else {
                    format!("{}: {}", n.path, n.message)
                } },
            });
            if !n.path.is_empty() {
                let root = report.root.as_ref().and_then(|r| r.to_str());
                let artifact = artifact_location(under_root(&n.path, root));
                v["locations"] = json!([{ "physicalLocation": { "artifactLocation": artifact } }]);
            }
            v
        })
        .collect();
    let complete = report.stats.errors == 0 && report.stats.missing_paths.is_empty();
    json!({
        "executionSuccessful": complete,
        "toolExecutionNotifications": notifications,
    })
}
