//! Runs a check's HTTP steps (see `keyburn_scanner::rules::Step`): renders
//! the templates, sends each request through the shared [`Http`] plumbing
//! (reads retried on 429 and gateway errors, mutations never after a
//! timeout), and maps the answer to an outcome with the step's matchers.
//!
//! Answers are read defensively: an HTML page (a proxy, a login wall)
//! only fits a matcher that asks for a body substring, garbage JSON fits
//! no JSON matcher, and a body is read up to [`MAX_BODY`] bytes.

use std::collections::BTreeMap;

use keyburn_scanner::rules::{Extract, Matcher, Step};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::guard::Guard;
use super::{CheckError, Limiter};
use crate::http::{CallError, Http};

/// The most of an answer read for matching.
const MAX_BODY: usize = 1 << 20;

/// The values templates may name.
pub struct Vars<'a> {
    pub secret: &'a str,
    pub parts: &'a BTreeMap<String, String>,
    pub base: Option<&'a str>,
    pub extracted: BTreeMap<String, String>,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "secret" => Some(self.secret),
            "base" => self.base,
            _ => match name.strip_prefix("part.") {
                Some(p) => self.parts.get(p).map(String::as_str),
                None => self.extracted.get(name).map(String::as_str),
            },
        }
    }

    /// `{name}` replaced by its value; `{{` and `}}` are literal braces.
    pub fn render(&self, template: &str) -> Result<String, CheckError> {
        self.render_with(template, |_, v| Ok(v))
    }

    /// [`Vars::render`] for a base URL: a value put in it must be a host
    /// name's labels (a shop's subdomain, a region), so that no part can
    /// send the request elsewhere.
    pub fn render_host(&self, template: &str) -> Result<String, CheckError> {
        self.render_with(template, |name, v| {
            let label_ok = |l: &str| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if v.split('.').all(label_ok) {
                Ok(v)
            } else {
                Err(CheckError::Input(format!(
                    "{{{name}}} is not a host name, so it cannot be part of the provider's address"
                )))
            }
        })
    }

    fn render_with<'v>(
        &'v self,
        template: &str,
        check: impl Fn(&str, &'v str) -> Result<&'v str, CheckError>,
    ) -> Result<String, CheckError> {
        let mut out = String::with_capacity(template.len() + self.secret.len());
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(CheckError::Input(format!(
                    "template {template:?}: unmatched '}}'"
                )));
            }
            let end = tail.find('}').ok_or_else(|| {
                CheckError::Input(format!("template {template:?}: unclosed '{{'"))
            })?;
            let name = &tail[1..end];
            let value = self
                .get(name)
                .ok_or_else(|| match name.strip_prefix("part.") {
                    Some(p) => CheckError::Input(format!(
                        "needs the part {p:?} (give it with --part {p}=VALUE)"
                    )),
                    None => {
                        CheckError::Input(format!("template names {{{name}}}, which is not set"))
                    }
                })?;
            out.push_str(check(name, value)?);
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn render_json(&self, v: &Value) -> Result<Value, CheckError> {
        Ok(match v {
            Value::String(s) => Value::String(self.render(s)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_json(x))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), self.render_json(x)?)))
                    .collect::<Result<_, CheckError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The end of a flow: the outcome a matcher named, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub outcome: String,
    pub reason: String,
}

/// How a flow is run.
pub struct Runner<'a> {
    pub http: &'a Http,
    pub guard: &'a Guard,
    pub limiter: Option<&'a Limiter>,
    /// The provider's base URLs as configured, by host name (`""` for
    /// its main one): requests under them are trusted, others go through
    /// the guard.
    pub bases: &'a BTreeMap<String, String>,
    /// The provider family, for `--endpoint` hints.
    pub family: &'a str,
    /// A revocation: its non-GET steps are mutations.
    pub mutating: bool,
    /// For error messages: `slack token validate`.
    pub call: &'a str,
}

impl Runner<'_> {
    /// Run `steps` until a matcher fits; an answer that fits none, and is
    /// not a 2xx leading to a next step, is a [`CheckError::Answer`].
    pub async fn run(&self, steps: &[Step], vars: &mut Vars<'_>) -> Result<Ended, CheckError> {
        for (i, step) in steps.iter().enumerate() {
            let last = i + 1 == steps.len();
            let answer = self.send(step, vars, i + 1).await?;
            if let Some(m) = step.matchers.iter().find(|m| answer.fits(m)) {
                return Ok(Ended {
                    outcome: m.outcome.clone(),
                    reason: m.reason.clone().unwrap_or_else(|| answer.describe()),
                });
            }
            if !(200..300).contains(&answer.status) || last {
                return Err(CheckError::Answer(format!(
                    "{} (step {}): {}",
                    self.call,
                    i + 1,
                    answer.unexpected()
                )));
            }
            for (name, how) in &step.extract {
                let v = answer.extract(how, vars)?.ok_or_else(|| {
                    CheckError::Answer(format!(
                        "{} (step {}): the answer has no {name}",
                        self.call,
                        i + 1
                    ))
                })?;
                vars.extracted.insert(name.clone(), v);
            }
        }
        Err(CheckError::Input(format!("{}: no steps", self.call)))
    }

    async fn send(&self, step: &Step, vars: &Vars<'_>, n: usize) -> Result<Answer, CheckError> {
        let path = vars.render(&step.path)?;
        let mut base = None;
        let url = if !step.path.starts_with('/') {
            path
        } else {
            let host = step.host.as_deref().unwrap_or("");
            let template = self.bases.get(host).ok_or_else(|| {
                let key = match host {
                    "" => self.family.to_string(),
                    h => format!("{}.{h}", self.family),
                };
                CheckError::Skipped(format!(
                    "no public address to call: give it with --endpoint {key}=URL"
                ))
            })?;
            let b = vars.render_host(template)?;
            let url = format!("{}{}", b.trim_end_matches('/'), path);
            base = Some(b);
            url
        };
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| CheckError::Input(format!("{}: not a URL ({e})", self.call)))?;
        let trusted = base.is_some_and(|b| url.starts_with(&b));
        let pinned;
        let http = if trusted {
            self.http
        } else {
            pinned = self.guard.pin(self.http, &parsed).await?;
            &pinned
        };
        let method = reqwest::Method::from_bytes(step.method.as_bytes())
            .map_err(|e| CheckError::Input(e.to_string()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &step.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| CheckError::Input(format!("header {k:?}: {e}")))?;
            headers.insert(name, header_value(&vars.render(v)?)?);
        }
        if let Some(b) = &step.bearer {
            headers.insert(
                AUTHORIZATION,
                header_value(&format!("Bearer {}", vars.render(b)?))?,
            );
        }
        let basic = match &step.basic {
            Some([u, p]) => Some((vars.render(u)?, vars.render(p)?)),
            None => None,
        };
        let form: Vec<(String, String)> = step
            .form
            .iter()
            .map(|(k, v)| Ok((k.clone(), vars.render(v)?)))
            .collect::<Result<_, CheckError>>()?;
        let json = step
            .json
            .as_ref()
            .map(|j| vars.render_json(j))
            .transpose()?;
        let idempotent = !self.mutating || matches!(step.method.as_str(), "GET" | "HEAD");
        if let Some(l) = self.limiter {
            l.wait().await;
        }
        let call = format!("{} (step {n})", self.call);
        let build = |c: &reqwest::Client| {
            let mut r = c
                .request(method.clone(), parsed.clone())
                .headers(headers.clone());
            if let Some((u, p)) = &basic {
                r = r.basic_auth(u, Some(p));
            }
            if !form.is_empty() {
                r = r.form(&form);
            }
            if let Some(j) = &json {
                r = r.json(j);
            }
            r
        };
        let unanswered = |e: CheckError| match e {
            CheckError::Call(c) if !idempotent && !c.answered() => CheckError::NoAnswer(c),
            e => e,
        };
        let r = http
            .exchange(&call, idempotent, build)
            .await
            .map_err(|e| unanswered(CheckError::Call(e)))?;
        Answer::read(r, &call).await.map_err(unanswered)
    }
}

fn header_value(v: &str) -> Result<HeaderValue, CheckError> {
    let mut h = HeaderValue::from_str(v)
        .map_err(|_| CheckError::Input("a header value holds characters HTTP forbids".into()))?;
    h.set_sensitive(true);
    Ok(h)
}

/// A provider's answer, read once.
struct Answer {
    status: u16,
    html: bool,
    body: String,
    json: Option<Value>,
}

impl Answer {
    async fn read(r: reqwest::Response, call: &str) -> Result<Answer, CheckError> {
        let status = r.status().as_u16();
        let html_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
        let mut body = Vec::new();
        let mut r = r;
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| CheckError::Call(CallError::request(call, e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                body.truncate(MAX_BODY);
                break;
            }
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let head = body
            .trim_start()
            .get(..15)
            .unwrap_or("")
            .to_ascii_lowercase();
        let html = html_type || head.starts_with("<!doctype html") || head.starts_with("<html");
        let json = if html {
            None
        } else {
            serde_json::from_str(&body).ok()
        };
        Ok(Answer {
            status,
            html,
            body,
            json,
        })
    }

    /// An HTML page or a body that is not JSON (a proxy's, a captive
    /// portal's) only fits a matcher that names a substring of it.
    fn fits(&self, m: &Matcher) -> bool {
        let garbled = self.html || (self.json.is_none() && !self.body.trim().is_empty());
        if garbled && m.body.is_none() {
            return false;
        }
        if !m.status.is_empty() && !m.status.contains(&self.status) {
            return false;
        }
        if let Some(b) = &m.body {
            if !self.body.contains(b.as_str()) {
                return false;
            }
        }
        let json = self.json.as_ref();
        if !m.present.iter().all(|p| {
            json.and_then(|j| lookup(j, p))
                .is_some_and(|v| !v.is_null())
        }) {
            return false;
        }
        m.json.iter().all(|(path, want)| {
            let got = self.json.as_ref().and_then(|j| lookup(j, path));
            match (got, want) {
                (Some(g), Value::Array(any)) if !g.is_array() => any.contains(g),
                (Some(g), w) => g == w,
                (None, Value::Null) => true,
                (None, _) => false,
            }
        })
    }

    fn extract(&self, how: &Extract, vars: &Vars<'_>) -> Result<Option<String>, CheckError> {
        let Some(json) = &self.json else {
            return Ok(None);
        };
        let found = match how {
            Extract::Path(p) => lookup(json, p),
            Extract::Find { list, filter, take } => {
                let items = if list.is_empty() {
                    Some(json)
                } else {
                    lookup(json, list)
                };
                let want: Vec<(&String, String)> = filter
                    .iter()
                    .map(|(k, v)| Ok((k, vars.render(v)?)))
                    .collect::<Result<_, CheckError>>()?;
                items
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter().find(|item| {
                            want.iter().all(|(k, v)| {
                                lookup(item, k).and_then(scalar).as_deref() == Some(v)
                            })
                        })
                    })
                    .and_then(|item| lookup(item, take))
            }
        };
        Ok(found.and_then(scalar))
    }

    fn describe(&self) -> String {
        format!("HTTP {}", self.status)
    }

    fn unexpected(&self) -> String {
        if self.html {
            format!(
                "HTTP {} with an HTML page, not the API's answer",
                self.status
            )
        } else if self.status == 429 {
            "rate limited (HTTP 429) beyond the wait keyburn allows".into()
        } else if self.json.is_none() && !self.body.trim().is_empty() {
            format!("HTTP {} with a body that is not JSON", self.status)
        } else {
            format!("HTTP {}, an answer no matcher expects", self.status)
        }
    }
}

/// A dotted path into JSON: `result.id`, `items.0.name`.
fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, key| match v {
        Value::Object(o) => o.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(parts: &'a BTreeMap<String, String>) -> Vars<'a> {
        Vars {
            secret: "s3cr3t",
            parts,
            base: Some("https://api.example"),
            extracted: [("id".to_string(), "42".to_string())].into(),
        }
    }

    #[test]
    fn templates_name_the_secret_parts_and_extracted_values() {
        let parts = [("sid".to_string(), "AC1".to_string())].into();
        let v = vars(&parts);
        assert_eq!(
            v.render("{base}/a/{part.sid}/k/{id}?t={secret}&x={{y}}")
                .unwrap(),
            "https://api.example/a/AC1/k/42?t=s3cr3t&x={y}"
        );
        let hostile = [("shop".to_string(), "evil.example/x#".to_string())].into();
        let h = vars(&hostile);
        assert!(h.render_host("https://{part.shop}.myshopify.com").is_err());
        let fine = [("shop".to_string(), "acme-store".to_string())].into();
        assert_eq!(
            vars(&fine)
                .render_host("https://{part.shop}.myshopify.com")
                .unwrap(),
            "https://acme-store.myshopify.com"
        );
        let e = v.render("{part.account}").unwrap_err().to_string();
        assert!(e.contains("--part account=VALUE"), "{e}");
        assert!(v.render("{nope}").is_err());
        assert!(v.render("{secret").is_err());
    }

    fn answer(status: u16, body: &str, html: bool) -> Answer {
        Answer {
            status,
            html,
            body: body.into(),
            json: serde_json::from_str(body).ok(),
        }
    }

    #[test]
    fn matchers_need_every_condition_and_html_fits_only_body_matchers() {
        let m: Matcher = serde_json::from_value(serde_json::json!({
            "status": [200], "json": {"ok": true, "error": null}, "outcome": "active"
        }))
        .unwrap();
        assert!(answer(200, r#"{"ok":true}"#, false).fits(&m));
        assert!(!answer(200, r#"{"ok":true,"error":"x"}"#, false).fits(&m));
        assert!(!answer(401, r#"{"ok":true}"#, false).fits(&m));
        assert!(!answer(200, "garbage", false).fits(&m));
        let any: Matcher = serde_json::from_value(serde_json::json!({
            "json": {"error": ["invalid_auth", "token_revoked"]}, "outcome": "inactive"
        }))
        .unwrap();
        assert!(answer(200, r#"{"error":"token_revoked"}"#, false).fits(&any));
        assert!(!answer(200, r#"{"error":"ratelimited"}"#, false).fits(&any));
        let status_only: Matcher = serde_json::from_value(serde_json::json!({
            "status": [200], "outcome": "active"
        }))
        .unwrap();
        assert!(!answer(200, "<html>login</html>", true).fits(&status_only));
    }

    #[test]
    fn extraction_follows_paths_and_finds_list_items() {
        let parts = BTreeMap::new();
        let v = vars(&parts);
        let a = answer(
            200,
            r#"{"result":{"id":"abc"},"items":[{"t":"x","id":1},{"t":"s3cr3t","id":2}]}"#,
            false,
        );
        assert_eq!(
            a.extract(&Extract::Path("result.id".into()), &v).unwrap(),
            Some("abc".into())
        );
        let find = Extract::Find {
            list: "items".into(),
            filter: [("t".to_string(), "{secret}".to_string())].into(),
            take: "id".into(),
        };
        assert_eq!(a.extract(&find, &v).unwrap(), Some("2".into()));
    }
}
