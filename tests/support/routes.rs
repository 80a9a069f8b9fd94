//! edgeHub's routing, as far as the deployment's routes need it: which routes a message from a
//! module output matches, and where they send it. The edgeHub double records telemetry; tests
//! apply the manifest's `$edgeHub` routes to it, so a route that would not carry edgeguard's
//! messages (or other modules' security messages into its input) fails a test instead of a
//! deployment.
//!
//! The grammar is edgeHub's (module-composition docs): `FROM <source> [WHERE <condition>] INTO
//! <sink>`; sources `/*`, `/messages/*`, `/messages/modules/*`, `/messages/modules/<m>/*`,
//! `/messages/modules/<m>/outputs/*`, `/messages/modules/<m>/outputs/<o>`; sinks `$upstream` and
//! `BrokeredEndpoint("/modules/<m>/inputs/<i>")`. Conditions: the part of IoT Hub's query language
//! these routes use, comparisons of system properties (`$outputName`, `$connectionModuleId`,
//! `$connectionDeviceId`) with `=` or `<>`/`!=` and a quoted string, joined by `AND`. Anything else
//! is refused with an error rather than guessed.

use serde_json::Value;

/// Where a routed message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Upstream,
    Input { module: String, input: String },
}

/// One route of the manifest.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    source: Source,
    condition: Vec<Comparison>,
    pub sink: Sink,
    /// 0 (highest) to 9; edgeHub's default is 0.
    pub priority: u8,
    /// `None`: the store-and-forward TTL applies.
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `/*` and `/messages/*` (every message; leaf devices too).
    All,
    /// `/messages/modules/*`.
    AnyModule,
    /// `/messages/modules/<m>/*`.
    Module(String),
    /// `/messages/modules/<m>/outputs/*`.
    AnyOutput(String),
    /// `/messages/modules/<m>/outputs/<o>`.
    Output(String, String),
}

#[derive(Debug, Clone)]
struct Comparison {
    property: String,
    equal: bool,
    value: String,
}

/// A message as routing sees it: the sending module and its output (`$.on`), if any.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub device: &'a str,
    pub module: &'a str,
    pub output: Option<&'a str>,
}

impl Route {
    pub fn parse(name: &str, text: &str) -> Result<Route, String> {
        let err = |what: &str| format!("route {name}: {what}: {text}");
        let rest = text
            .trim()
            .strip_prefix("FROM ")
            .ok_or_else(|| err("no FROM"))?;
        let (head, sink) = rest.split_once(" INTO ").ok_or_else(|| err("no INTO"))?;
        let (source, condition) = match head.split_once(" WHERE ") {
            Some((s, c)) => (s.trim(), Some(c.trim())),
            None => (head.trim(), None),
        };
        Ok(Route {
            name: name.to_string(),
            source: parse_source(source).ok_or_else(|| err("unknown source"))?,
            condition: match condition {
                Some(c) => parse_condition(c).map_err(|e| err(&e))?,
                None => Vec::new(),
            },
            sink: parse_sink(sink.trim()).ok_or_else(|| err("unknown sink"))?,
            priority: 0,
            ttl_secs: None,
        })
    }

    /// Whether a message from `origin` takes this route.
    pub fn matches(&self, origin: &Origin<'_>) -> bool {
        let source = match &self.source {
            Source::All | Source::AnyModule => true,
            Source::Module(m) => m == origin.module,
            Source::AnyOutput(m) => m == origin.module && origin.output.is_some(),
            Source::Output(m, o) => m == origin.module && origin.output == Some(o.as_str()),
        };
        source
            && self.condition.iter().all(|c| {
                let actual = match c.property.as_str() {
                    "outputName" => origin.output,
                    "connectionModuleId" => Some(origin.module),
                    "connectionDeviceId" => Some(origin.device),
                    _ => unreachable!("refused while parsing"),
                };
                (actual == Some(c.value.as_str())) == c.equal
            })
    }
}

fn parse_source(s: &str) -> Option<Source> {
    if s == "/*" || s == "/messages/*" {
        return Some(Source::All);
    }
    let rest = s.strip_prefix("/messages/modules/")?;
    if rest == "*" {
        return Some(Source::AnyModule);
    }
    let (module, tail) = rest.split_once('/')?;
    if module.is_empty() || module.contains('*') {
        return None;
    }
    match tail {
        "*" => Some(Source::Module(module.into())),
        "outputs/*" => Some(Source::AnyOutput(module.into())),
        _ => {
            let output = tail.strip_prefix("outputs/")?;
            (!output.is_empty() && !output.contains(['*', '/']))
                .then(|| Source::Output(module.into(), output.into()))
        }
    }
}

fn parse_sink(s: &str) -> Option<Sink> {
    if s == "$upstream" {
        return Some(Sink::Upstream);
    }
    let path = s.strip_prefix("BrokeredEndpoint(\"")?.strip_suffix("\")")?;
    let rest = path.strip_prefix("/modules/")?;
    let (module, input) = rest.split_once("/inputs/")?;
    (!module.is_empty() && !input.is_empty() && !input.contains('/')).then(|| Sink::Input {
        module: module.into(),
        input: input.into(),
    })
}

fn parse_condition(c: &str) -> Result<Vec<Comparison>, String> {
    c.split(" AND ")
        .map(|part| {
            let part = part.trim();
            let (lhs, equal, rhs) = if let Some((l, r)) = part.split_once("<>") {
                (l, false, r)
            } else if let Some((l, r)) = part.split_once("!=") {
                (l, false, r)
            } else if let Some((l, r)) = part.split_once('=') {
                (l, true, r)
            } else {
                return Err(format!("unsupported condition {part:?}"));
            };
            let property = lhs
                .trim()
                .strip_prefix('$')
                .ok_or_else(|| format!("only system properties are supported: {part:?}"))?;
            if !matches!(
                property,
                "outputName" | "connectionModuleId" | "connectionDeviceId"
            ) {
                return Err(format!("unsupported property {property:?}"));
            }
            let value = rhs
                .trim()
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(|| format!("expected a quoted string: {part:?}"))?;
            Ok(Comparison {
                property: property.to_string(),
                equal,
                value: value.to_string(),
            })
        })
        .collect()
}

/// The routes of a manifest's `$edgeHub` desired properties (a template's or a generated one's).
pub fn from_manifest(manifest: &Value) -> Result<Vec<Route>, String> {
    let routes = manifest["modulesContent"]["$edgeHub"]["properties.desired"]["routes"]
        .as_object()
        .ok_or("the manifest has no $edgeHub routes")?;
    routes
        .iter()
        .map(|(name, spec)| match spec {
            Value::String(text) => Route::parse(name, text),
            Value::Object(o) => {
                let text = o["route"]
                    .as_str()
                    .ok_or_else(|| format!("route {name}: no \"route\" string"))?;
                let mut r = Route::parse(name, text)?;
                r.priority = match o.get("priority") {
                    None => 0,
                    Some(p) => p
                        .as_u64()
                        .filter(|p| *p <= 9)
                        .ok_or_else(|| format!("route {name}: priority {p} is not 0-9"))?
                        as u8,
                };
                r.ttl_secs = o.get("timeToLiveSecs").and_then(Value::as_u64);
                Ok(r)
            }
            other => Err(format!(
                "route {name}: neither a string nor an object: {other}"
            )),
        })
        .collect()
}

/// The routes a message from `origin` takes.
pub fn routes_for<'r>(routes: &'r [Route], origin: &Origin<'_>) -> Vec<&'r Route> {
    routes.iter().filter(|r| r.matches(origin)).collect()
}
