//! The engine interface the WAF needs, small enough that another engine
//! (e.g. Coraza) can replace libmodsecurity: compile a rule set once, open a
//! transaction per request, feed it the request headers then the body, read
//! the verdict and the matched rules.

/// An engine failure on one request (the WAF then fails closed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct EngineError(pub String);

/// What the engine decided after a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Block { status: u16 },
}

/// One rule that matched (and logs), as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleMatch {
    pub(crate) id: u32,
    pub(crate) msg: String,
    /// The value that matched (client data: escape before writing it).
    pub(crate) value: String,
    pub(crate) severity: Option<u8>,
}

/// The request as the engine sees it.
pub(crate) struct Request<'a> {
    pub(crate) client_ip: &'a str,
    pub(crate) client_port: u16,
    pub(crate) server_ip: &'a str,
    pub(crate) server_port: u16,
    pub(crate) method: &'a str,
    /// The request target as sent (path and query, raw).
    pub(crate) uri: &'a [u8],
    /// "1.0", "1.1", "2.0".
    pub(crate) http_version: &'a str,
    pub(crate) headers: Vec<(&'a [u8], &'a [u8])>,
}

/// A compiled rule set, shared by every site with the same settings.
pub(crate) trait Ruleset: Send + Sync {
    fn transaction(&self, request_id: &str) -> Result<Box<dyn Transaction>, EngineError>;
}

/// One request's inspection. Calls block (CPU-bound): run them off the
/// async worker threads.
pub(crate) trait Transaction: Send + Sync {
    /// Phase 1: connection, request line, headers.
    fn request_headers(&mut self, req: &Request<'_>) -> Result<Verdict, EngineError>;
    /// Phase 2: the (possibly partial) body, then the body rules. Called once,
    /// also for requests without a body.
    fn request_body(&mut self, body: &[u8]) -> Result<Verdict, EngineError>;
    /// Every rule that matched so far.
    fn matches(&self) -> &[RuleMatch];
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("[{name} \"");
    let start = text.find(&open)? + open.len();
    let rest = &text[start..];
    // Fields end with `"]` followed by ` [` or the end of the line.
    let end = rest
        .find("\"] [")
        .or_else(|| rest.strip_suffix("\"]").map(|s| s.len()))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Parse one ModSecurity text log message ("ModSecurity: Warning. Matched
/// ... [id \"942100\"] [msg \"...\"] ...").
pub(crate) fn parse_log_line(raw: &[u8]) -> Option<RuleMatch> {
    let text = String::from_utf8_lossy(raw);
    let id = field(&text, "id")?.parse::<u32>().ok()?;
    let msg = field(&text, "msg").unwrap_or("").to_string();
    let severity = field(&text, "severity").and_then(|s| s.parse().ok());
    let value = text
        .find("(Value: `")
        .map(|i| {
            let rest = &text[i + "(Value: `".len()..];
            let end = rest
                .find("' ) [file \"")
                .or_else(|| rest.find("' )"))
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .or_else(|| {
            // libinjection and @pm rules: "Matched Data: X found within VAR: VALUE".
            let data = field(&text, "data")?;
            let i = data.find(" found within ")?;
            let rest = &data[i + " found within ".len()..];
            rest.find(": ").map(|j| rest[j + 2..].to_string())
        })
        .unwrap_or_default();
    Some(RuleMatch {
        id,
        msg,
        value,
        severity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modsecurity_message() {
        let line = "ModSecurity: Warning. detected SQLi using libinjection with fingerprint 's&1' [file \"/usr/share/modsecurity-crs/rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf\"] [line \"65\"] [id \"942100\"] [rev \"\"] [msg \"SQL Injection Attack Detected via libinjection\"] [data \"Matched Data: s&1 found within ARGS:id: 1 OR 1=1\"] [severity \"2\"] [ver \"OWASP_CRS/3.3.4\"] [maturity \"0\"] [accuracy \"0\"] [tag \"attack-sqli\"] [hostname \"127.0.0.1\"] [uri \"/\"] [unique_id \"abc\"] [ref \"v8,8\"]";
        let m = parse_log_line(line.as_bytes()).unwrap();
        assert_eq!(m.id, 942100);
        assert_eq!(m.msg, "SQL Injection Attack Detected via libinjection");
        assert_eq!(m.severity, Some(2));
        assert_eq!(m.value, "1 OR 1=1");
        let line = "ModSecurity: Warning. Matched \"Operator `Rx' with parameter `x' against variable `ARGS:q' (Value: `a' ) \"b' ) [file \"f\"] [line \"1\"] [id \"941100\"] [msg \"XSS\"]";
        let m = parse_log_line(line.as_bytes()).unwrap();
        assert_eq!(m.value, "a' ) \"b");
        assert_eq!(m.msg, "XSS");
        assert!(parse_log_line(b"garbage [id \"x\"]").is_none());
        assert!(parse_log_line(b"").is_none());
    }
}
